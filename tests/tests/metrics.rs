//! The live /metrics of an API and a worker: they count what happened
//! (jobs, confirms, tokens and cost to the micro-dollar, queue depth), and
//! the text passes `promtool check metrics` (promtool is required: see
//! `promtool()`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, StackOptions, ODD_PRICE};

async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    r.text().await.unwrap()
}

/// The value of the series `name{labels}` (labels as rendered, sorted by name).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Sum over every series of `name` whose labels contain each of `having`.
fn sum(text: &str, name: &str, having: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| having.iter().all(|h| l.contains(h)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The promtool to check the text with: `SLUICE_PROMTOOL` (which
/// scripts/test.sh sets), else `promtool` on the PATH. A missing promtool
/// fails the test: without it, the format is not checked.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_PROMTOOL") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "promtool not found: set SLUICE_PROMTOOL or put promtool on the PATH \
             (scripts/promtool.sh fetches one and prints its path; scripts/test.sh does it for you)"
        )
    })
}

async fn promtool_accepts(promtool: &Path, text: &str, who: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refuses the {who}'s /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn live_metrics_count_what_happened_and_pass_promtool() {
    let promtool = promtool();
    let (stack, client) = acme_stack(StackOptions {
        mock_args: ODD_PRICE.mock_flags().into(),
        extra_toml: ODD_PRICE.toml("mock"),
        ..StackOptions::default()
    })
    .await;
    let jobs: Vec<Value> = (0..20)
        .map(|i| json!({"body": {"model": "mock-small", "max_tokens": 5 + i,
                                 "messages": [{"role": "user", "content": format!("count me {i}")}]}}))
        .collect();
    let ids = client.submit_batch(jobs).await;
    let done = client.wait_all(&ids, 60).await;
    let (mut cost, mut prompt, mut completion) = (0u64, 0u64, 0u64);
    for job in &done {
        assert_eq!(job["status"], "succeeded", "{job}");
        cost += job["cost_micros"].as_u64().unwrap();
        prompt += job["usage"]["prompt_tokens"].as_u64().unwrap();
        completion += job["usage"]["completion_tokens"].as_u64().unwrap();
    }
    assert!(cost > 0);

    let api = scrape(&stack.api_url()).await;
    let worker_url = stack.workers[0]
        .addr
        .clone()
        .expect("worker metrics address");
    let mut worker = scrape(&worker_url).await;
    // The worker counts a job's usage just after storing it; the last
    // jobs' answers can reach the client a moment before the counters move.
    for _ in 0..50 {
        if sum(&worker, "sluice_cost_micros_total", &[]) as u64 == cost {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        worker = scrape(&worker_url).await;
    }

    assert_eq!(
        value(&api, r#"sluice_jobs_submitted_total{priority="standard"}"#),
        Some(20.0),
        "{api}"
    );
    assert_eq!(
        value(&api, r#"sluice_publish_confirms_total{outcome="ok"}"#),
        Some(20.0),
        "{api}"
    );
    assert_eq!(
        value(&worker, r#"sluice_jobs_finished_total{status="succeeded"}"#),
        Some(20.0),
        "{worker}"
    );
    // Tokens and cost, by model and tenant: what the jobs report, exactly.
    let model = r#"model="mock-small""#;
    assert_eq!(
        sum(&worker, "sluice_cost_micros_total", &[model]) as u64,
        cost,
        "{worker}"
    );
    assert_eq!(
        sum(&worker, "sluice_tokens_total", &[model, r#"kind="prompt""#]) as u64,
        prompt,
        "{worker}"
    );
    assert_eq!(
        sum(
            &worker,
            "sluice_tokens_total",
            &[model, r#"kind="completion""#]
        ) as u64,
        completion,
        "{worker}"
    );
    let cost_series: Vec<&str> = worker
        .lines()
        .filter(|l| l.starts_with("sluice_cost_micros_total{"))
        .collect();
    assert_eq!(
        cost_series.len(),
        1,
        "one tenant, one model: {cost_series:?}"
    );
    assert!(!cost_series[0].contains(r#"tenant="""#), "{cost_series:?}");
    // Queue depth per queue, read from the broker.
    for queue in ["interactive", "standard", "batch", "dead"] {
        let series = format!(r#"sluice_queue_depth{{queue="{queue}"}}"#);
        assert!(
            value(&worker, &series).is_some(),
            "{series} missing:\n{worker}"
        );
    }
    // Every batch's wait and flush reason.
    let flushed = sum(&worker, "sluice_batch_flushes_total", &[]);
    assert!(flushed >= 1.0, "{worker}");
    assert_eq!(
        sum(&worker, "sluice_batch_wait_seconds_count", &[]),
        flushed,
        "{worker}"
    );

    promtool_accepts(&promtool, &api, "api").await;
    promtool_accepts(&promtool, &worker, "worker").await;
}
