//! `sluice-bench econ` end to end, at a tiny size: it starts its own
//! stack on the real services (under its own prefix and database, removed
//! afterwards), runs every mode, and writes the table and the charts a
//! user reads. The figures themselves are the bench's to report, not a
//! test's to assert.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sluice_e2e::run_bench;

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-e2e-{name}-{}", ulid::Ulid::new()))
}

async fn econ(args: &[&str]) -> std::process::Output {
    run_bench("econ", args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_econ_runs_every_mode_and_writes_its_table_and_charts() {
    let out = out_dir("econ");
    let out_arg = out.display().to_string();
    // Time at 2% of full scale: requests take ~12 ms, users think ~0.6 s,
    // each phase measures 2 s.
    let ran = econ(&[
        "--scale",
        "0.02",
        "--users",
        "4",
        "--no-sweep",
        "--warmup-s",
        "0",
        "--measure-s",
        "100",
        "--requests",
        "200",
        "--workers",
        "1",
        "--out",
        &out_arg,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "bench econ failed:\n{stderr}");

    let table = std::fs::read_to_string(out.join("econ.md")).expect("econ.md written");
    assert!(table.contains("time scale 0.02"), "{table}");
    for mode in [
        "direct calls",
        "sluice (batching + cache)",
        "sluice without cache",
        "sluice + self-hosted endpoint",
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {mode} | $")))
            .unwrap_or_else(|| panic!("no table row for {mode}:\n{table}"));
        assert!(row.contains(" ms |"), "{row}");
    }
    assert!(table.contains("### Targets"), "{table}");
    for chart in ["latency_cdf.svg", "cost.svg", "p95_vs_users.svg"] {
        let svg = std::fs::read_to_string(out.join(chart)).expect("chart written");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_econ_refuses_bad_flags_with_a_one_line_reason() {
    let ran = econ(&["--scale", "0"]).await;
    assert!(!ran.status.success());
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("--scale must be in (0, 1]"), "{stderr}");

    let ran = econ(&["--no-sweep"]).await;
    assert!(!ran.status.success());
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("--no-sweep needs --users"), "{stderr}");

    let ran = econ(&["--batch-turnaround-s", "0.5"]).await;
    assert!(!ran.status.success());
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("--batch-turnaround-s must be"), "{stderr}");
}
