//! Cancel, deadlines, long-poll, and tenant isolation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Stack, StackExt, StackOptions};

fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": prompt}]}})
}

#[tokio::test]
async fn a_canceled_or_expired_job_never_reaches_the_provider() {
    // No worker yet: jobs stay queued.
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let canceled = client.submit(&chat("cancel me")).await;
    let expiring = client
        .submit(&json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "late"}]},
            "deadline_s": 0.3}))
        .await;
    let kept = client.submit(&chat("keep me")).await;

    let r = client
        .post(&format!("/v1/jobs/{canceled}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "canceled");
    // Canceling twice: it is no longer queued.
    let again = client
        .post(&format!("/v1/jobs/{canceled}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.body["type"], "/problems/not-cancelable");

    // A long-poll on the expiring job returns when its deadline passes.
    let started = Instant::now();
    let expired = client.wait(&expiring, 10).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(expired["error"]["type"], "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(8));

    stack.start_worker().await;
    let done = client.wait(&kept, 30).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The worker consumed all three messages; only one prompt reached the provider.
    let stats = stack.mock_stats().await;
    assert_eq!(stats["prompts"], 1, "{stats}");
    assert_eq!(client.job(&canceled).await.body["status"], "canceled");
    assert_eq!(client.job(&expiring).await.body["status"], "expired");
}

#[tokio::test]
async fn a_long_poll_returns_when_the_job_ends_and_a_short_one_times_out() {
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 0,
        mock_args: vec!["--latency-fixed-ms".into(), "300".into()],
        ..StackOptions::default()
    })
    .await;
    let id = client.submit(&chat("wait for me")).await;

    // Nothing runs it yet: a 1 s wait answers, still queued, after about 1 s.
    let started = Instant::now();
    let queued = client.wait(&id, 1).await;
    assert_eq!(queued["status"], "queued");
    assert!(started.elapsed() >= Duration::from_millis(900));

    let waiter = {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move { client.wait(&id, 30).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack.start_worker().await;
    let done = waiter.await.unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");

    // Bad waits are refused.
    let r = client.get(&format!("/v1/jobs/{id}?wait=61")).await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = client.get(&format!("/v1/jobs/{id}?wait=soon")).await;
    assert_eq!(r.status, 422, "{r:?}");
}

#[tokio::test]
async fn one_tenant_never_sees_another_tenants_jobs() {
    let stack = Stack::start(StackOptions::default()).await;
    let alice = stack.tenant("alice").await;
    let bob = stack.tenant("bob").await;
    let id = alice.submit(&chat("private")).await;
    assert_eq!(alice.wait(&id, 30).await["status"], "succeeded");

    let r = bob.job(&id).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.body["type"], "/problems/job-not-found");
    let r = bob.get(&format!("/v1/jobs/{id}?wait=1")).await;
    assert_eq!(r.status, 404);
    let r = bob.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(r.status, 404);
    // Alice still sees it, whole.
    assert_eq!(alice.job(&id).await.body["status"], "succeeded");
}
