//! `GET /v1/usage`: the calling tenant's jobs, tokens and cost over a
//! range, grouped.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{cacheable, chat, eventually, with, Row, TestApp};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Rows in March 2024, and two just outside it.
async fn march(app: &TestApp) {
    let rows = [
        ("mock-small", Some("chat"), 100, "2024-03-05T10:00:00Z"),
        ("mock-small", Some("chat"), 50, "2024-03-05T11:00:00Z"),
        ("mock-small", Some("summary"), 30, "2024-03-06T09:00:00Z"),
        ("mock-embed", None, 2, "2024-03-31T23:59:59Z"),
        ("mock-small", Some("chat"), 1_000, "2024-02-29T23:59:59Z"),
        ("mock-small", Some("chat"), 1_000, "2024-04-01T00:00:00Z"),
    ];
    for (model, feature, cost, finished) in rows {
        app.record(Row {
            model,
            feature,
            cost_micros: cost,
            finished_at: at(finished),
            ..Row::default()
        })
        .await;
    }
}

fn lines(reply: &crate::support::Reply) -> Vec<Value> {
    reply.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn usage_is_grouped_over_the_range() {
    let app = TestApp::spawn().await;
    march(&app).await;
    let other = app.tenant("globex").await;
    march(&other).await;

    let reply = app
        .get("/v1/usage?from=2024-03-01&to=2024-04-01&group_by=model,feature")
        .await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "usage");
    assert_eq!(reply.body["group_by"], json!(["model", "feature"]));
    assert_eq!(reply.body["from"], "2024-03-01T00:00:00Z");
    let mut found: Vec<(Value, u64, u64)> = lines(&reply)
        .iter()
        .map(|l| {
            let jobs = l["jobs"].as_u64().unwrap();
            (l["group"].clone(), jobs, l["cost_micros"].as_u64().unwrap())
        })
        .collect();
    found.sort_by_key(|(_, _, cost)| *cost);
    assert_eq!(
        found,
        vec![
            (json!({"model": "mock-embed", "feature": null}), 1, 2),
            (json!({"model": "mock-small", "feature": "summary"}), 1, 30),
            (json!({"model": "mock-small", "feature": "chat"}), 2, 150),
        ]
    );
    let total = &reply.body["total"];
    assert_eq!(total["jobs"], 4, "only this tenant's rows in range");
    assert_eq!(total["cost_micros"], 182);
    assert_eq!(total["prompt_tokens"], 40);
    assert_eq!(total["completion_tokens"], 20);
}

#[tokio::test]
async fn usage_is_grouped_by_day_and_the_range_takes_rfc3339_times() {
    let app = TestApp::spawn().await;
    march(&app).await;
    let reply = app
        .get("/v1/usage?from=2024-03-05T10:30:00Z&to=2024-03-07T00:00:00%2B00:00&group_by=day")
        .await;
    reply.expect(200);
    let mut days: Vec<(String, u64)> = lines(&reply)
        .iter()
        .map(|l| {
            let day = l["group"]["day"].as_str().unwrap().to_owned();
            (day, l["cost_micros"].as_u64().unwrap())
        })
        .collect();
    days.sort();
    assert_eq!(
        days,
        vec![("2024-03-05".to_owned(), 50), ("2024-03-06".to_owned(), 30)]
    );
    // No grouping: one line for everything.
    let all = app.get("/v1/usage?from=2024-01-01&to=2025-01-01").await;
    all.expect(200);
    assert_eq!(all.body["total"]["jobs"], 6);
}

#[tokio::test]
async fn by_default_usage_covers_this_month_so_far() {
    let app = TestApp::spawn().await;
    march(&app).await;
    app.spend(7).await;
    let reply = app.get("/v1/usage").await;
    reply.expect(200);
    assert_eq!(reply.body["total"]["jobs"], 1);
    assert_eq!(reply.body["total"]["cost_micros"], 7);
}

#[tokio::test]
async fn a_bad_range_or_grouping_is_refused() {
    let app = TestApp::spawn().await;
    for query in [
        "from=2024-04-01&to=2024-03-01",
        "from=2024-03-01&to=2024-03-01",
        "from=yesterday",
        "to=2024-13-01",
        "group_by=model,colour",
        "group_by=tenant",
    ] {
        let reply = app.get(&format!("/v1/usage?{query}")).await;
        reply.expect_problem(422, "invalid-request");
    }
}

#[tokio::test]
async fn finished_jobs_and_cache_hits_show_in_usage() {
    let app = TestApp::spawn_with_worker().await;
    let feature = |job: Value, f: &str| with(job, "metadata", json!({"feature": f}));
    let a = app.submit_ok(&feature(cacheable("usage a"), "alpha")).await;
    let b = app.submit_ok(&feature(chat("usage b"), "beta")).await;
    let cost_a = app.wait(&a).await["cost_micros"].as_u64().unwrap();
    let cost_b = app.wait(&b).await["cost_micros"].as_u64().unwrap();
    app.submit(&feature(cacheable("usage a"), "alpha"))
        .await
        .expect(200);

    let reply = eventually("three ledger rows", || async {
        let reply = app.get("/v1/usage?group_by=feature").await;
        (reply.body["total"]["jobs"] == 3).then_some(reply)
    })
    .await;
    let alpha = lines(&reply)
        .into_iter()
        .find(|l| l["group"]["feature"] == "alpha")
        .unwrap();
    assert_eq!(alpha["jobs"], 2);
    assert_eq!(alpha["cost_micros"], cost_a, "the hit cost nothing");
    assert_eq!(alpha["saved_micros"], cost_a, "and saved the first call");
    assert_eq!(reply.body["total"]["cost_micros"], cost_a + cost_b);
}

/// A worker that died during a provider call leaves a call the provider
/// billed: the job's next attempt charges it as a repeated call, priced
/// like the answer (its completion estimated). A worker that died before
/// its call left charges nothing more.
#[tokio::test]
async fn a_call_orphaned_by_a_dead_worker_is_charged_and_one_never_sent_is_not() {
    use sluice_core::JobId;
    use sluice_store::jobs::JobStore;

    let app = TestApp::spawn().await;
    let orphaned = app.submit_ok(&chat("orphaned call")).await;
    let unsent = app.submit_ok(&chat("never sent")).await;
    // Two workers took them and died: the first after its call left, the
    // second before. Their messages are still in the queue.
    let (a, b): (JobId, JobId) = (orphaned.parse().unwrap(), unsent.parse().unwrap());
    let store = &app.memory_store;
    store.start_many(&[a, b], Utc::now()).await.unwrap();
    store.mark_sent(&[a]).await.unwrap();

    app.start_worker();
    let job_a = app.wait(&orphaned).await;
    let job_b = app.wait(&unsent).await;
    assert_eq!(
        (job_a["attempts"].as_u64(), job_b["attempts"].as_u64()),
        (Some(2), Some(2))
    );
    let (cost_a, cost_b) = (
        job_a["cost_micros"].as_u64().unwrap(),
        job_b["cost_micros"].as_u64().unwrap(),
    );
    assert!(cost_a > 0 && cost_b > 0);

    let reply = eventually("the ledger rows", || async {
        let reply = app.get("/v1/usage").await;
        (reply.body["total"]["jobs"] == 2).then_some(reply)
    })
    .await;
    let total = &reply.body["total"];
    assert_eq!(total["repeated_calls"], 1, "{total}");
    // The orphan's prompt is exact, its completion estimated: together,
    // what the answered call cost.
    let (exact, estimated) = (
        total["cost_micros"].as_u64().unwrap(),
        total["estimated_micros"].as_u64().unwrap(),
    );
    assert!(estimated > 0, "{total}");
    assert_eq!(exact + estimated, 2 * cost_a + cost_b, "{total}");
    let budget = app.get("/v1/budget").await;
    assert_eq!(budget.body["spent_micros"], 2 * cost_a + cost_b);
    let repeated = app
        .metrics
        .provider_calls_repeated
        .with_label_values(&["mock", "orphaned"])
        .get();
    assert_eq!(repeated, 1);
}

/// A job whose deliveries kept killing their workers is dead-lettered; the
/// calls those deliveries sent are charged all the same.
#[tokio::test]
async fn a_dead_lettered_jobs_sent_calls_are_charged() {
    use futures::StreamExt;
    use sluice_core::{JobId, Priority};
    use sluice_queue::{JobQueue, Source};
    use sluice_store::jobs::JobStore;

    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("a poison pill")).await;
    let job: JobId = id.parse().unwrap();
    // Two deliveries started it and sent its call, and died.
    for _ in 0..2 {
        app.memory_store.start(job, Utc::now()).await.unwrap();
        app.memory_store.mark_sent(&[job]).await.unwrap();
    }
    // The broker gives up on it: its message goes to the dead letters.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut deliveries = app
        .memory_queue
        .consume(Source::Jobs(Priority::Standard), 1, stop.clone())
        .await
        .unwrap();
    deliveries
        .next()
        .await
        .unwrap()
        .dead_letter()
        .await
        .unwrap();
    stop.cancel();

    app.start_worker();
    let ended = app.wait(&id).await;
    assert_eq!(ended["status"], "failed");
    assert_eq!(ended["error"]["type"], "dead_lettered");
    let reply = eventually("two repeated calls", || async {
        let reply = app.get("/v1/usage").await;
        (reply.body["total"]["repeated_calls"] == 2).then_some(reply)
    })
    .await;
    let total = &reply.body["total"];
    // Priced at the prompt as Sluice counts it and the completion at
    // max_tokens, on the route's first provider.
    assert_eq!(
        total["jobs"], 0,
        "a dead-lettered job has no row of its own"
    );
    assert!(total["cost_micros"].as_u64().unwrap() > 0, "{total}");
    assert!(total["estimated_micros"].as_u64().unwrap() > 0, "{total}");
}
