//! Cost tiers at the API: each job shows the tier that answered it, a
//! `batch` job gets the config's deadline, and usage groups by tier.

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_core::Tier;

use crate::support::{cacheable, chat, with, Row, TestApp};

#[tokio::test]
async fn a_job_shows_the_tier_that_answered_it() {
    let app = TestApp::spawn_with_worker().await;
    let queued = app.submit(&cacheable("Tier?")).await;
    queued.expect(202);
    assert_eq!(queued.body["tier"], json!(null), "not answered yet");
    let ran = app.wait(&queued.id()).await;
    assert_eq!(ran["tier"], "realtime", "{ran}");
    let hit = app.submit(&cacheable("Tier?")).await;
    hit.expect(200);
    assert_eq!(hit.body["tier"], "cache");
}

#[tokio::test]
async fn a_batch_job_may_wait_as_long_as_the_config_says_unless_it_says_less() {
    let app = TestApp::builder()
        .toml("[jobs]\nbatch_deadline_s = 3600")
        .spawn()
        .await;
    let deadline_in = |job: &serde_json::Value| {
        let created: DateTime<Utc> = job["created_at"].as_str().unwrap().parse().unwrap();
        let deadline: DateTime<Utc> = job["deadline_at"].as_str().unwrap().parse().unwrap();
        (deadline - created).num_seconds()
    };
    let batch = app
        .submit(&with(chat("later"), "priority", json!("batch")))
        .await;
    batch.expect(202);
    assert_eq!(deadline_in(&batch.body), 3600);
    let sooner = with(chat("sooner"), "priority", json!("batch"));
    let sooner = app.submit(&with(sooner, "deadline_s", json!(60))).await;
    assert_eq!(deadline_in(&sooner.body), 60);
    // A standard job without one has none: it cannot wait.
    let standard = app.submit(&chat("now")).await;
    assert_eq!(standard.body["deadline_at"], json!(null));
}

#[tokio::test]
async fn usage_groups_by_tier() {
    let app = TestApp::spawn().await;
    for (tier, cost) in [
        (Tier::Realtime, 100),
        (Tier::Flex, 50),
        (Tier::Flex, 50),
        (Tier::Cache, 0),
    ] {
        app.record(Row {
            cost_micros: cost,
            tier,
            ..Row::default()
        })
        .await;
    }
    let reply = app.get("/v1/usage?group_by=tier").await;
    reply.expect(200);
    let mut found: Vec<(String, u64, u64)> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["group"]["tier"].as_str().unwrap().to_owned(),
                l["jobs"].as_u64().unwrap(),
                l["cost_micros"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("cache".into(), 1, 0),
            ("flex".into(), 2, 100),
            ("realtime".into(), 1, 100),
        ]
    );
}

#[tokio::test]
async fn a_job_that_cannot_wait_never_joins_one_that_may_go_out_on_a_slower_tier() {
    let app = TestApp::spawn().await;
    let later = |text| with(cacheable(text), "deadline_s", json!(3600));
    let waits = app.submit_ok(&later("the same question")).await;
    // An identical job without a deadline goes out on its own…
    let now = app.submit(&cacheable("the same question")).await;
    now.expect(202);
    assert_eq!(now.body["cache"], json!(null), "{}", now.body);
    // … while one that may wait too joins the first.
    let joined = app.submit_ok(&later("the same question")).await;

    app.start_worker();
    let (first, now, joined) = (
        app.wait(&waits).await,
        app.wait(&now.id()).await,
        app.wait(&joined).await,
    );
    assert!(first["cost_micros"].as_u64().unwrap() > 0);
    assert!(now["cost_micros"].as_u64().unwrap() > 0, "{now}");
    assert_eq!(joined["cache"]["kind"], "inflight", "{joined}");
    assert_eq!(joined["cache"]["source_job"], waits);
    assert_eq!(
        app.mock.stats().total.prompts,
        2,
        "one call each, not three"
    );
}

#[tokio::test]
async fn a_job_never_waits_on_one_whose_deadline_is_later_than_its_own() {
    let app = TestApp::spawn().await;
    let within = |text, s| with(cacheable(text), "deadline_s", json!(s));
    let day = app.submit_ok(&within("the same question", 86_400)).await;
    // An identical job that may wait an hour would wait a day on the
    // first (which may go into a provider batch): it goes out on its own…
    let hour = app.submit(&within("the same question", 3600)).await;
    hour.expect(202);
    assert_eq!(hour.body["cache"], json!(null), "{}", hour.body);
    // … while one that may wait two days joins the first.
    let two_days = app.submit_ok(&within("the same question", 172_800)).await;

    app.start_worker();
    let (first, hour, joined) = (
        app.wait(&day).await,
        app.wait(&hour.id()).await,
        app.wait(&two_days).await,
    );
    assert!(first["cost_micros"].as_u64().unwrap() > 0);
    assert!(hour["cost_micros"].as_u64().unwrap() > 0, "{hour}");
    assert_eq!(joined["cache"]["kind"], "inflight", "{joined}");
    assert_eq!(joined["cache"]["source_job"], day);
    assert_eq!(
        app.mock.stats().total.prompts,
        2,
        "one call each, not three"
    );
}

#[tokio::test]
async fn a_key_with_a_default_class_sends_jobs_that_name_none_in_it() {
    use sluice_store::tenants::TenantStore;
    let app = TestApp::spawn().await;
    let batch_key = app.new_key().await;
    app.tenants
        .set_key_priority(&batch_key.key_id, Some(sluice_core::Priority::Batch))
        .await
        .unwrap();
    let job = batch_key.submit(&chat("background")).await;
    job.expect(202);
    assert_eq!(job.body["priority"], "batch");
    assert!(
        job.body["deadline_at"].is_string(),
        "a batch job may wait: {}",
        job.body
    );
    // A job's own class wins; another key of the tenant keeps standard.
    let own = batch_key
        .submit(&with(chat("now"), "priority", json!("interactive")))
        .await;
    assert_eq!(own.body["priority"], "interactive");
    assert_eq!(
        app.submit(&chat("plain")).await.body["priority"],
        "standard"
    );
}
