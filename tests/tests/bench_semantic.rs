//! `sluice-bench cache --semantic --crowd N` end to end, at a tiny size,
//! with the real embedding server (`SLUICE_EMBEDDER`, as for
//! `semantic_embedder.rs`): a probe set of its own, and a crowd of 100
//! questions filed in the real Redis. The figures are the bench's to
//! report; the test asserts that it reports them, that centred buckets
//! find a reworded question's twin, and that the crowd's scope is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::{embedder_path, run_bench};

const PROBES: &str = r#"{
  "system": "You are the support assistant of an online shop.",
  "groups": [
    {"id": "cancel", "phrasings": ["How do I cancel my order?", "How can I cancel the order I placed?"]},
    {"id": "cancel-sub", "near_miss_of": "cancel", "changes": "object",
     "phrasings": ["How do I cancel my subscription?"]}
  ]
}"#;

/// Keys in the real Redis whose names start with `prefix`.
async fn keys_under(prefix: &str) -> usize {
    use fred::prelude::*;
    let (client, keys) = sluice_e2e::redis_keys(&format!("{prefix}*")).await;
    client.quit().await.unwrap();
    keys.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_semantic_crowd_reports_both_planes_and_leaves_nothing_behind() {
    let embedder = embedder_path().unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-e2e-crowd-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let probes = dir.join("probes.json");
    std::fs::write(&probes, PROBES).unwrap();
    let ran = run_bench(
        "cache",
        &[
            "--semantic",
            "--embedder",
            &embedder.display().to_string(),
            "--probes",
            &probes.display().to_string(),
            "--thresholds",
            "0.9",
            "--max-errors",
            "0.01",
            "--crowd",
            "100",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        ran.status.success(),
        "bench cache --semantic failed:\n{stderr}"
    );
    let report = String::from_utf8_lossy(&ran.stdout);
    assert!(report.contains("| 0.90 static |"), "{report}");
    assert!(
        report.contains("### A crowded scope: 100 questions"),
        "{report}"
    );
    let row = |planes: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("| {planes} |")))
            .unwrap_or_else(|| panic!("no row for planes {planes:?} in:\n{report}"))
            .to_owned()
    };
    row("through the origin");
    // Every rewording ("Could you explain how to …") of a filed question
    // has it as its nearest entry at 0.90 or more, and the centred
    // buckets bring it among the candidates.
    let centred = row("centred (Sluice's)");
    let found = centred.rsplit('|').nth(1).unwrap().trim().to_owned();
    let (got, of) = found.split_once(" of ").unwrap();
    assert!(of.parse::<usize>().unwrap() > 0, "{centred}");
    assert_eq!(got, of, "{centred}");
    assert_eq!(
        keys_under("bench-crowd-").await,
        0,
        "the crowd's scope is left in Redis"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
