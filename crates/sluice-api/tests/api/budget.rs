//! Monthly spend caps: `GET /v1/budget`, and 402 for a tenant (or a key)
//! at or past its cap.

use chrono::{Datelike, Duration, Utc};
use serde_json::json;
use sluice_store::tenants::TenantStore;

use crate::support::{cacheable, chat, eventually, Row, TestApp};

fn this_month() -> String {
    Utc::now().format("%Y-%m").to_string()
}

/// The app with its tenant capped at `cap` µ$ a month, set before its key
/// is first used (a checked key is trusted for a few seconds).
async fn capped(cap: u64) -> TestApp {
    let app = TestApp::spawn().await;
    app.tenants
        .set_budget(&app.tenant_name, Some(cap))
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn the_budget_shows_this_months_spend_and_no_cap() {
    let app = TestApp::spawn().await;
    app.spend(250).await;
    let reply = app.get("/v1/budget").await;
    reply.expect(200);
    assert_eq!(
        reply.body,
        json!({"object": "budget", "month": this_month(), "spent_micros": 250,
               "budget_micros": null, "remaining_micros": null})
    );
}

#[tokio::test]
async fn the_budget_shows_the_cap_and_what_remains_of_it() {
    let app = capped(1_000).await;
    app.spend(400).await;
    // Last month's spend does not count.
    let now = Utc::now();
    let last_month = now - Duration::days(i64::from(now.day()) + 1);
    app.record(Row {
        cost_micros: 5_000,
        finished_at: last_month,
        ..Row::default()
    })
    .await;
    let reply = app.get("/v1/budget").await;
    reply.expect(200);
    assert_eq!(reply.body["spent_micros"], 400);
    assert_eq!(reply.body["budget_micros"], 1_000);
    assert_eq!(reply.body["remaining_micros"], 600);
    app.submit(&chat("still within")).await.expect(202);
}

#[tokio::test]
async fn a_tenant_at_its_cap_is_refused_new_jobs() {
    let app = capped(1_000).await;
    app.spend(1_000).await;
    let reply = app.submit(&chat("one more")).await;
    reply.expect_problem(402, "budget-exhausted");
    assert!(reply.detail().contains(&this_month()), "{reply:?}");
    app.batch(&[chat("a"), chat("b")])
        .await
        .expect_problem(402, "budget-exhausted");
    // OpenAI answers a spent quota with 429 `insufficient_quota`.
    app.post(
        "/v1/completions",
        &json!({"model": "mock-small", "prompt": "sync"}),
    )
    .await
    .expect_openai_error(429, "insufficient_quota", Some("insufficient_quota"));
    assert_eq!(app.queued_jobs().await, 0);
    let shown = app.get("/v1/budget").await;
    assert_eq!(shown.body["remaining_micros"], 0);

    // Another tenant is not held back.
    let other = app.tenant("globex").await;
    other.submit(&chat("mine")).await.expect(202);
}

#[tokio::test]
async fn a_key_at_its_own_cap_is_refused_while_the_tenants_other_keys_go_on() {
    let app = TestApp::spawn().await;
    app.tenants
        .set_key_budget(&app.key_id, Some(100))
        .await
        .unwrap();
    app.spend(100).await;
    let reply = app.submit(&chat("over the key's cap")).await;
    reply.expect_problem(402, "budget-exhausted");
    assert!(reply.detail().contains("API key"), "{reply:?}");
    let other_key = app.new_key().await;
    other_key.submit(&chat("another key")).await.expect(202);
}

#[tokio::test]
async fn a_tenant_past_its_cap_still_gets_cache_hits() {
    let app = TestApp::spawn_with_worker().await;
    let id = app.submit_ok(&cacheable("answered once")).await;
    let cost = app.wait(&id).await["cost_micros"].as_u64().unwrap();
    // The worker writes the job's ledger row just after its end.
    let spent = eventually("the job's ledger row", || async {
        let spent = app.get("/v1/budget").await.body["spent_micros"].as_u64();
        spent.filter(|s| *s > 0)
    })
    .await;
    assert_eq!(spent, cost);
    app.tenants
        .set_budget(&app.tenant_name, Some(cost))
        .await
        .unwrap();
    let capped = app.new_key().await;
    capped.submit(&cacheable("answered once")).await.expect(200);
    capped
        .submit(&cacheable("never answered"))
        .await
        .expect_problem(402, "budget-exhausted");
}
