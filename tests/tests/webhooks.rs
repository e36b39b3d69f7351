//! Webhooks end to end: the real API, worker and webhooks role, and a
//! receiver ([`sluice_e2e::receiver`]) that checks every signature with its
//! own implementation of the Standard Webhooks spec, not Sluice's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use serde_json::{json, Value};
use sluice_e2e::receiver::*;
use sluice_e2e::{acme_stack, StackOptions, TEST_WEBHOOKS_TOML};

#[tokio::test]
async fn every_end_arrives_signed_once_per_webhook_id_with_the_job_as_get_shows_it() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (mut stack, client) = signed_stack(&receiver, 0).await;

    // Queued with no worker: one canceled, one expiring; then the rest run.
    let canceled = client.submit(&hooked("cancel me", &receiver.url)).await;
    let mut expiring = hooked("late", &receiver.url);
    expiring["deadline_s"] = json!(0.2);
    let expired = client.submit(&expiring).await;
    let r = client
        .post(&format!("/v1/jobs/{canceled}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs: Vec<Value> = (0..20)
        .map(|i| hooked(&format!("job {i}"), &receiver.url))
        .collect();
    let ids: Vec<String> = futures::future::join_all(jobs.iter().map(|j| client.submit(j))).await;
    // Only failures asked for: a success sends nothing.
    let mut quiet = hooked("quiet", &receiver.url);
    quiet["webhook"]["events"] = json!(["failed"]);
    let quiet = client.submit(&quiet).await;
    let no_hook = client.submit(&chat("no webhook")).await;
    stack.start_worker().await;
    let mut all = ids.clone();
    all.extend([
        canceled.clone(),
        expired.clone(),
        quiet.clone(),
        no_hook.clone(),
    ]);
    client.wait_all(&all, 60).await;

    let seen = receiver.until(30, |s| delivered(s).len() >= 22).await;
    assert!(
        seen.iter().all(|s| s.valid_signature),
        "bad signature in {seen:?}"
    );
    let by_id = delivered(&seen);
    assert_eq!(by_id.len(), 22, "{seen:?}");
    // Nothing failed, so each webhook-id came exactly once.
    assert_eq!(seen.len(), 22, "{seen:?}");
    for (job, kind) in ids
        .iter()
        .map(|j| (j, "succeeded"))
        .chain([(&canceled, "canceled"), (&expired, "expired")])
    {
        let id = format!("msg_{job}_{kind}");
        let event = &by_id.get(&id).unwrap_or_else(|| panic!("no {id}")).body;
        assert_eq!(event["type"], format!("job.{kind}"));
        assert!(event["timestamp"].is_string());
        let shown = client.job(job).await.body;
        assert_eq!(event["data"], shown, "data differs from GET for {job}");
    }
    // Give a stray delivery the time to show up, then check none did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.seen().len(), 22);
    assert!(deliveries(&client, &quiet).await.is_empty());
    assert!(deliveries(&client, &no_hook).await.is_empty());
    let d = deliveries(&client, &ids[0]).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["state"], "succeeded");
    assert_eq!(d[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d[0]["attempts"][0]["status_code"], 200);
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_fourth_and_one_that_stays_down_is_exhausted() {
    let flaky = Receiver::start(Behaviour::FailFirst(3)).await;
    let down = Receiver::start(Behaviour::Down).await;
    let (stack, client) = acme_stack(StackOptions {
        webhooks: true,
        ..StackOptions::default()
    })
    .await;
    with_secret(&client, &flaky).await;
    *down.secret.lock().unwrap() = flaky.secret.lock().unwrap().clone();

    let job = client.submit(&hooked("flaky", &flaky.url)).await;
    let lost = client.submit(&hooked("down", &down.url)).await;
    client.wait_all(&[job.clone(), lost.clone()], 30).await;

    let d = delivery_in(&client, &job, "succeeded").await;
    let attempts = d["attempts"].as_array().unwrap();
    let codes: Vec<&Value> = attempts.iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [500, 500, 500, 200], "{d}");
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert!(attempts[0]["next_attempt_at"].is_string());
    let seen = flaky.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen
        .iter()
        .all(|s| s.valid_signature && s.id == format!("msg_{job}_succeeded")));

    let d = delivery_in(&client, &lost, "exhausted").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 4, "{d}");
    assert!(d["attempts"][3]["next_attempt_at"].is_null());
    let metrics = stack.webhook_metrics().await;
    assert!(
        metrics.contains("sluice_webhook_exhausted_total 1"),
        "{metrics}"
    );

    // A manual redelivery goes through the schedule again.
    *down.behaviour.lock().unwrap() = Behaviour::Accept;
    let id = d["id"].as_str().unwrap();
    let r = client
        .post(
            &format!("/v1/jobs/{lost}/deliveries/{id}/redeliver"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let d = delivery_in(&client, &lost, "succeeded").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 5, "{d}");
}

#[tokio::test]
async fn the_webhooks_role_killed_mid_delivery_loses_nothing() {
    let receiver = Receiver::start(Behaviour::Hold).await;
    let (mut stack, client) = acme_stack(StackOptions {
        webhooks: true,
        webhooks_toml: TEST_WEBHOOKS_TOML
            .replace("attempt_timeout_s = 2", "attempt_timeout_s = 30"),
        ..StackOptions::default()
    })
    .await;
    with_secret(&client, &receiver).await;
    let jobs: Vec<Value> = (0..10)
        .map(|i| hooked(&format!("job {i}"), &receiver.url))
        .collect();
    let ids: Vec<String> = futures::future::join_all(jobs.iter().map(|j| client.submit(j))).await;
    client.wait_all(&ids, 60).await;
    // Attempts are in flight (held by the receiver): kill the role.
    for _ in 0..200 {
        if receiver.held.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(receiver.held.load(std::sync::atomic::Ordering::SeqCst) > 0);
    stack.webhooks.take().unwrap().kill().await;
    *receiver.behaviour.lock().unwrap() = Behaviour::Accept;
    receiver.release.notify_waiters();
    stack.start_webhooks().await;

    let seen = receiver.until(60, |s| delivered(s).len() >= 10).await;
    let got = delivered(&seen);
    for job in &ids {
        assert!(
            got.contains_key(&format!("msg_{job}_succeeded")),
            "{job} lost: {seen:?}"
        );
        delivery_in(&client, job, "succeeded").await;
    }
    assert!(seen.iter().all(|s| s.valid_signature));
}

#[tokio::test]
async fn a_private_address_is_refused_with_a_clear_error_and_an_allowlisted_one_works() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (_stack, client) = acme_stack(StackOptions {
        webhooks: true,
        ..StackOptions::default()
    })
    .await;

    // No signing secret yet: a clear 422.
    let r = client.post("/v1/jobs", &hooked("x", &receiver.url)).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["type"], "/problems/invalid-webhook");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/webhook-secret"),
        "{r:?}"
    );
    with_secret(&client, &receiver).await;

    for (url, why) in [
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("ftp://example.com/hook", "http"),
    ] {
        let r = client.post("/v1/jobs", &hooked("x", url)).await;
        assert_eq!(r.status, 422, "{url}: {r:?}");
        assert_eq!(r.body["type"], "/problems/invalid-webhook", "{url}");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{url}: {detail}");
    }
    // 127.0.0.0/8 is on this stack's allowlist.
    let job = client.submit(&hooked("allowed", &receiver.url)).await;
    client.wait(&job, 30).await;
    let seen = receiver.until(30, |s| !s.is_empty()).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].valid_signature);
}

#[tokio::test]
async fn tenant_endpoints_get_the_jobs_that_name_no_webhook() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (_stack, client) = acme_stack(StackOptions {
        webhooks: true,
        ..StackOptions::default()
    })
    .await;
    let r = client
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": receiver.url, "events": ["succeeded"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let endpoint = r.body["id"].as_str().unwrap().to_owned();
    *receiver.secret.lock().unwrap() = r.body["secret"].as_str().unwrap().to_owned();
    let listed = client.get("/v1/webhook-endpoints").await;
    assert_eq!(listed.body["data"][0]["id"], endpoint.as_str());
    assert!(listed.body["data"][0].get("secret").is_none());

    let job = client.submit(&chat("to the endpoint")).await;
    client.wait(&job, 30).await;
    let seen = receiver.until(30, |s| !s.is_empty()).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].valid_signature);
    assert_eq!(seen[0].id, format!("msg_{job}_succeeded"));

    // A rotation: the old secret still verifies during the overlap, and
    // so does the new one.
    let r = client
        .post(
            &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            &json!({"overlap_s": 60}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let job = client.submit(&chat("after rotation")).await;
    client.wait(&job, 30).await;
    let seen = receiver.until(30, |s| s.len() >= 2).await;
    assert!(seen[1].valid_signature, "the old secret no longer verifies");
    *receiver.secret.lock().unwrap() = r.body["secret"].as_str().unwrap().to_owned();
    let job = client.submit(&chat("new secret")).await;
    client.wait(&job, 30).await;
    let seen = receiver.until(30, |s| s.len() >= 3).await;
    assert!(seen[2].valid_signature, "the new secret does not verify");
}
