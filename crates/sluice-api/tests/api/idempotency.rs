//! `Idempotency-Key`: a repeat answers with the first request's job; the
//! key is per tenant, and a request that was not accepted frees it.

use crate::support::{chat, QueueFault, TestApp};

const KEY: (&str, &str) = ("idempotency-key", "order-42");

#[tokio::test]
async fn a_repeat_answers_200_with_the_same_job_and_enqueues_nothing_more() {
    let app = TestApp::spawn().await;
    let first = app.post_with("/v1/jobs", &chat("pay once"), &[KEY]).await;
    first.expect(202);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = app.post_with("/v1/jobs", &chat("pay once"), &[KEY]).await;
    again.expect(200);
    assert_eq!(again.id(), first.id());
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.queued_jobs().await, 1, "one job queued");
}

#[tokio::test]
async fn a_replay_shows_the_job_as_it_is_now() {
    let app = TestApp::spawn_with_worker().await;
    let id = app
        .post_with("/v1/jobs", &chat("then look again"), &[KEY])
        .await
        .expect(202)
        .id();
    app.wait(&id).await;
    let again = app
        .post_with("/v1/jobs", &chat("then look again"), &[KEY])
        .await;
    again.expect(200);
    assert_eq!(again.id(), id);
    assert_eq!(again.body["status"], "succeeded");
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused() {
    let app = TestApp::spawn().await;
    app.post_with("/v1/jobs", &chat("first body"), &[KEY])
        .await
        .expect(202);
    let reply = app
        .post_with("/v1/jobs", &chat("another body"), &[KEY])
        .await;
    reply.expect_problem(422, "idempotency-key-reused");
    assert_eq!(app.queued_jobs().await, 1);
}

#[tokio::test]
async fn keys_are_per_tenant() {
    let app = TestApp::spawn().await;
    let mine = app
        .post_with("/v1/jobs", &chat("same"), &[KEY])
        .await
        .expect(202)
        .id();
    let other = app.tenant("globex").await;
    let theirs = other.post_with("/v1/jobs", &chat("same"), &[KEY]).await;
    theirs.expect(202);
    assert_ne!(theirs.id(), mine);
    assert!(theirs.headers.get("idempotent-replayed").is_none());
    // And a different body is no reuse across tenants either.
    let key = ("idempotency-key", "only-mine");
    app.post_with("/v1/jobs", &chat("a"), &[key])
        .await
        .expect(202);
    other
        .post_with("/v1/jobs", &chat("b"), &[key])
        .await
        .expect(202);
}

#[tokio::test]
async fn a_repeat_while_the_first_is_being_accepted_is_told_to_retry() {
    let app = TestApp::spawn().await;
    let held = app.store.hold_next_create();
    let first = {
        let client = app.clone();
        app.background(async move { client.post_with("/v1/jobs", &chat("slow"), &[KEY]).await })
    };
    held.entered().await;
    let reply = app.post_with("/v1/jobs", &chat("slow"), &[KEY]).await;
    reply.expect_problem(409, "idempotency-in-progress");
    held.release();
    let first = first.await.unwrap();
    first.expect(202);
    let replay = app.post_with("/v1/jobs", &chat("slow"), &[KEY]).await;
    replay.expect(200);
    assert_eq!(replay.id(), first.id());
}

#[tokio::test]
async fn a_request_that_was_not_accepted_frees_its_key() {
    let app = TestApp::spawn().await;
    app.queue.set(QueueFault::Down);
    app.post_with("/v1/jobs", &chat("retry me"), &[KEY])
        .await
        .expect_problem(503, "queue-unavailable");
    app.queue.set(QueueFault::None);
    let retry = app.post_with("/v1/jobs", &chat("retry me"), &[KEY]).await;
    retry.expect(202);
    assert!(retry.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.job(&retry.id()).await.body["status"], "queued");
}

#[tokio::test]
async fn a_key_must_be_1_to_255_visible_characters() {
    let app = TestApp::spawn().await;
    let long = "k".repeat(256);
    for key in ["", "   ", "has space", long.as_str()] {
        let reply = app
            .post_with("/v1/jobs", &chat("x"), &[("idempotency-key", key)])
            .await;
        reply.expect_problem(422, "invalid-request");
    }
    let ok = "k".repeat(255);
    app.post_with("/v1/jobs", &chat("x"), &[("idempotency-key", &ok)])
        .await
        .expect(202);
}

/// Claims `KEY` for `body` as a request made `ago` would have, which has
/// stored no job (yet, or ever); the API's request timeout is 10 s.
async fn claimed_by_a_request_made(ago: std::time::Duration, body: &serde_json::Value) -> TestApp {
    use sluice_store::jobs::JobStore;
    let app = TestApp::builder()
        .toml("[api]\nrequest_timeout_s = 10")
        .spawn()
        .await;
    let fingerprint = sluice_core::batching::short_hash(body.to_string().as_bytes());
    let made = std::time::SystemTime::now() - ago;
    let job: sluice_core::JobId = ulid::Ulid::from_datetime(made).to_string().parse().unwrap();
    let ttl = std::time::Duration::from_secs(600);
    app.store
        .claim_idempotency(&app.tenant_id, KEY.1, &fingerprint, job, ttl)
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn a_key_whose_request_died_before_storing_its_job_is_free_again() {
    // 30 s ago: longer than any request lasts (twice the timeout).
    let body = chat("died halfway");
    let app = claimed_by_a_request_made(std::time::Duration::from_secs(30), &body).await;
    let retry = app.post_with("/v1/jobs", &body, &[KEY]).await;
    retry.expect(202);
    let replay = app.post_with("/v1/jobs", &body, &[KEY]).await;
    replay.expect(200);
    assert_eq!(replay.id(), retry.id());
}

#[tokio::test]
async fn a_key_whose_request_may_still_store_its_job_stays_held() {
    // 5 s ago: that request may still be running.
    let body = chat("still going");
    let app = claimed_by_a_request_made(std::time::Duration::from_secs(5), &body).await;
    app.post_with("/v1/jobs", &body, &[KEY])
        .await
        .expect_problem(409, "idempotency-in-progress");
}
