//! `sluice-bench throughput` end to end, at a tiny size: it measures the
//! broker's raw ceiling (before and after), starts its own stack on the
//! real services with the `--config` given, and reports every phase with
//! no job lost. The rates themselves are the bench's to report, not a
//! test's to assert.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::run_bench;

async fn throughput(args: &[&str]) -> std::process::Output {
    run_bench("throughput", args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_throughput_reports_every_phase_with_nothing_lost() {
    let dir = std::env::temp_dir().join(format!("sluice-e2e-tp-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("extra.toml");
    std::fs::write(&config, "[jobs]\npack_jobs = 4\n").unwrap();
    let json = dir.join("figures.json");
    let ran = throughput(&[
        "--jobs",
        "300",
        "--concurrency",
        "16",
        "--batch-size",
        "50",
        "--limiter-jobs",
        "40",
        "--backlog",
        "300",
        "--raw-messages",
        "400",
        "--config",
        &config.display().to_string(),
        "--json",
        &json.display().to_string(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "bench throughput failed:\n{stderr}");
    let table = String::from_utf8_lossy(&ran.stdout);
    for row in [
        "broker raw publish (confirmed, persistent, quorum)",
        "API accepted jobs/s (1 job(s) per request, 16 clients)",
        "API accepted jobs/s (50 job(s) per request, 2 clients)",
        "finished jobs/s end to end (50 job(s) per request, 2 clients)",
        "backlog drain, one worker (1 job(s) per request",
        "API accepted jobs/s, workers stopped (50 job(s) per request",
        "backlog drain, one worker (50 job(s) per request",
        "worker peak RSS with the backlog waiting",
        "CPU, cores busy on average (50 job(s) per request, 2 clients)",
    ] {
        assert!(table.contains(row), "no row {row:?} in:\n{table}");
    }
    assert!(table.contains("after the run"), "{table}");
    assert!(table.contains("(300 of 300, 0 not accepted)"), "{table}");

    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).unwrap();
    for steady in figures["steady"].as_array().unwrap() {
        assert_eq!(steady["accepted"], 300, "{steady}");
        assert!(steady["finished_per_s"].as_f64().unwrap() > 0.0, "{steady}");
        // Where the CPU went, per process group (from /proc, on Linux).
        let groups: Vec<&str> = steady["cpu"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group"].as_str().unwrap())
            .collect();
        for own in ["api", "worker", "mock", "bench"] {
            assert!(groups.contains(&own), "no {own} in {groups:?}");
        }
    }
    assert!(figures["raw_after"]["publish_per_s"].as_f64().unwrap() > 0.0);
    for backlog in ["backlog", "backlog_batches"] {
        let b = &figures[backlog];
        assert_eq!(b["jobs"], 300, "{b}");
        assert!(b["drain_per_s"].as_f64().unwrap() > 0.0, "{b}");
        assert!(b["worker_peak_rss_mib"].as_f64().unwrap() > 0.0, "{b}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bench_throughput_refuses_a_config_it_cannot_read_in_one_line() {
    let ran = throughput(&["--config", "/nonexistent/sluice-extra.toml"]).await;
    assert!(!ran.status.success());
    let stderr = String::from_utf8_lossy(&ran.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("/nonexistent/sluice-extra.toml"),
        "{stderr}"
    );
}
