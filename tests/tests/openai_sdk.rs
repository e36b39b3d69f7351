//! The official `openai` Python SDK, unchanged but for its base URL and
//! key, against a real stack (`tests/sdk/openai_sdk.py` holds the checks).
//! `scripts/test.sh` makes the SDK's virtualenv (`scripts/pyvenv.sh`) and
//! names its Python in `SLUICE_OPENAI_PYTHON`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use sluice_e2e::{python_tool, Price, Stack, StackOptions, ODD_PRICE};

/// The Python with the SDK.
fn python() -> PathBuf {
    python_tool(
        "SLUICE_OPENAI_PYTHON",
        "openai-sdk",
        "openai>=1.50,<3",
        "python",
    )
}

/// Runs the script's `checks` against `stack` with these keys; its output.
async fn run_checks(stack: &Stack, checks: &str, keys: &[(&str, String)]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk/openai_sdk.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(&script)
        .arg(checks)
        .env("SLUICE_BASE_URL", format!("{}/v1", stack.api_url()))
        .kill_on_drop(true);
    for (name, key) in keys {
        command.env(name, key);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the SDK's checks end within 3 minutes")
        .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the SDK's {checks} checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all passed"), "{stdout}");
    stdout
}

#[tokio::test]
async fn the_openai_sdk_works_unchanged_against_sluice() {
    let stack = Stack::start(StackOptions::default()).await;
    let key = stack.key("acme").await;
    let limited = stack.key("tight").await;
    stack
        .sluice(&[
            "admin",
            "tenant",
            "limits",
            "tight",
            "--requests-per-minute",
            "1",
        ])
        .await;
    let broke = stack.key("broke").await;
    stack
        .sluice(&[
            "admin",
            "tenant",
            "budget",
            "broke",
            "--monthly-micros",
            "0",
        ])
        .await;
    let out = run_checks(
        &stack,
        "surface",
        &[
            ("SLUICE_KEY", key),
            ("SLUICE_LIMITED", limited),
            ("SLUICE_BROKE", broke),
        ],
    )
    .await;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        11,
        "{out}"
    );
}

#[tokio::test]
async fn an_sdk_retry_after_a_timeout_does_not_bill_twice() {
    // Each call takes 1.5 s at the provider; the SDK gives up after 0.6 s
    // and tries again (twice at most).
    let stack = Stack::start(StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), "1500".into()],
        ..StackOptions::default()
    })
    .await;
    let key = stack.key("acme").await;
    run_checks(&stack, "retry", &[("SLUICE_KEY", key)]).await;
    let stats = stack.mock_stats().await;
    assert_eq!(
        stats["by_endpoint"]["/v1/chat/completions"]["requests"], 1,
        "the retries joined the first call: {stats}"
    );
}

#[tokio::test]
async fn the_openai_batch_api_works_unchanged_against_sluice() {
    // Lines take 150 ms at the provider and a worker holds two at once, so
    // a batch of 30 is still running when it is cancelled. The mock bills
    // at the config's prices, so each line has a cost.
    let prices = [ODD_PRICE];
    let stack = Stack::start(StackOptions {
        mock_args: ["--latency-fixed-ms", "150"]
            .map(str::to_owned)
            .into_iter()
            .chain(prices.iter().flat_map(Price::mock_flags))
            .collect(),
        worker_toml: "max_batch_size = 2\nbatches_in_flight = 1\n\
                      max_wait_ms = { interactive = 5, standard = 20, batch = 20 }"
            .into(),
        extra_toml: prices.iter().map(|p| p.toml("mock")).collect::<String>()
            + "[batches]\npoll_ms = 100\n",
        ..StackOptions::default()
    })
    .await;
    let key = stack.key("acme").await;
    let other = stack.key("other").await;
    let out = run_checks(
        &stack,
        "batches",
        &[("SLUICE_KEY", key), ("SLUICE_OTHER", other)],
    )
    .await;
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{out}"
    );
}
