//! Webhooks at the API: the tenant's signing secret, its endpoints, the
//! checks on a job's webhook, the announcement of a job's end, and each
//! job's deliveries (with manual redelivery).

use chrono::Utc;
use serde_json::{json, Value};
use sluice_core::webhook::{webhook_id, EventKind, WebhookMessage};
use sluice_store::webhooks::{Attempt, DeliveryState, NewDelivery, WebhookStore};

use crate::support::{chat, eventually, with, TestApp};

/// A public address (TEST-NET-3): no name to resolve, nothing listens.
const RECEIVER: &str = "https://203.0.113.10/hooks/sluice";

fn hooked(text: &str, webhook: Value) -> Value {
    with(chat(text), "webhook", webhook)
}

#[tokio::test]
async fn the_tenants_signing_secret_is_made_then_rotated() {
    let app = TestApp::spawn().await;
    let first = app.post_raw("/v1/webhook-secret", "").await;
    first.expect(201);
    let secret = first.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{first:?}");

    let before = Utc::now();
    let second = app
        .post("/v1/webhook-secret", &json!({"overlap_s": 60}))
        .await;
    second.expect(201);
    assert_ne!(second.body["secret"], secret.as_str());
    let until: chrono::DateTime<Utc> = second.body["previous_valid_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let overlap = (until - before).num_seconds();
    assert!((59..=61).contains(&overlap), "{overlap} s");
    // Both sign during the overlap.
    let pair = app.webhooks.tenant_secrets(&app.tenant_id).await.unwrap();
    assert!(pair.is_some());

    app.post("/v1/webhook-secret", &json!({"overlap": 60}))
        .await
        .expect_problem(422, "invalid-request");
    // At most 30 days; `null` is no body.
    let reply = app
        .post("/v1/webhook-secret", &json!({"overlap_s": 2_592_001}))
        .await;
    reply.expect_problem(422, "invalid-request");
    assert!(reply.detail().contains("30 days"), "{reply:?}");
    app.post_raw("/v1/webhook-secret", "null").await.expect(201);
}

#[tokio::test]
async fn a_job_naming_a_webhook_needs_the_tenants_secret_first() {
    let app = TestApp::spawn().await;
    let job = hooked("notify me", json!({"url": RECEIVER}));
    let reply = app.submit(&job).await;
    reply.expect_problem(422, "invalid-webhook");
    assert!(reply.detail().contains("/v1/webhook-secret"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0);

    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    app.submit(&job).await.expect(202);
}

#[tokio::test]
async fn a_webhook_url_the_address_policy_refuses_is_refused() {
    let app = TestApp::spawn().await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://203.0.113.10/hook",
    ] {
        let reply = app.submit(&hooked("x", json!({"url": url}))).await;
        reply.expect_problem(422, "invalid-webhook");
    }
    let no_events = hooked("x", json!({"url": RECEIVER, "events": []}));
    app.submit(&no_events)
        .await
        .expect_problem(422, "invalid-webhook");
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn the_configured_allowlist_lets_a_private_receiver_through() {
    let app = TestApp::builder()
        .toml("[webhooks]\nallow = [\"127.0.0.0/8\"]")
        .spawn()
        .await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    let job = hooked("local", json!({"url": "http://127.0.0.1:9/hook"}));
    app.submit(&job).await.expect(202);
    let job = hooked("private", json!({"url": "http://10.0.0.7/hook"}));
    app.submit(&job)
        .await
        .expect_problem(422, "invalid-webhook");
}

#[tokio::test]
async fn a_jobs_end_is_announced_only_when_it_has_a_webhook_that_wants_it() {
    let app = TestApp::spawn().await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    let plain = app.submit_ok(&chat("nobody listens")).await;
    let wants_success = app
        .submit_ok(&hooked(
            "only success",
            json!({"url": RECEIVER, "events": ["succeeded"]}),
        ))
        .await;
    let wants_all = app
        .submit_ok(&hooked("every end", json!({"url": RECEIVER})))
        .await;
    for id in [&plain, &wants_success, &wants_all] {
        app.cancel(id).await.expect(200);
    }
    let events = app.take_webhook_messages().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let WebhookMessage::Event(event) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(event.job_id.to_string(), wants_all);
    assert_eq!(event.webhook_id, format!("msg_{wants_all}_canceled"));
    let body: Value = serde_json::from_str(&event.body).unwrap();
    assert_eq!(body["type"], "job.canceled");
    assert_eq!(body["data"]["id"], wants_all.as_str());
    assert_eq!(body["data"]["status"], "canceled");
}

#[tokio::test]
async fn a_cache_hit_is_announced_before_it_is_answered() {
    let app = TestApp::spawn_with_worker().await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    let job = with(
        crate::support::cacheable("asked twice"),
        "webhook",
        json!({"url": RECEIVER, "events": ["succeeded"]}),
    );
    let first = app.submit_ok(&job).await;
    app.wait(&first).await;
    let hit = app.submit(&job).await;
    hit.expect(200);
    // The hit was announced before its 200; the worker announces the
    // first just after its end is stored, so it may come a moment later.
    let seen = std::cell::RefCell::new(app.announced_jobs().await);
    assert!(seen.borrow().contains(&hit.id()), "{seen:?}");
    let (app, seen_ref, first_ref) = (&app, &seen, &first);
    eventually("the first job's end announced", || async move {
        let more = app.announced_jobs().await;
        let mut seen = seen_ref.borrow_mut();
        seen.extend(more);
        seen.contains(first_ref).then_some(())
    })
    .await;
    let mut announced = seen.into_inner();
    announced.sort();
    let mut expected = vec![first.clone(), hit.id()];
    expected.sort();
    assert_eq!(announced, expected, "each end once");
}

#[tokio::test]
async fn endpoints_are_created_listed_rotated_and_deleted() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": RECEIVER, "events": ["succeeded", "failed"]}),
        )
        .await;
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created.body["url"], RECEIVER);
    assert_eq!(created.body["events"], json!(["succeeded", "failed"]));

    let listed = app.get("/v1/webhook-endpoints").await;
    listed.expect(200);
    assert_eq!(listed.body["object"], "list");
    let data = listed.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], id.as_str());
    assert!(data[0].get("secret").is_none(), "never shown again");

    let rotated = app
        .post_raw(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), "")
        .await;
    rotated.expect(200);
    assert_ne!(rotated.body["secret"], secret.as_str());
    assert!(rotated.body["previous_valid_until"].is_string());

    // Every event, a job's and a batch's, when `events` is left out.
    let all = app
        .post("/v1/webhook-endpoints", &json!({"url": RECEIVER}))
        .await;
    all.expect(201);
    assert_eq!(
        all.body["events"],
        json!([
            "succeeded",
            "failed",
            "canceled",
            "expired",
            "batch.completed",
            "batch.failed",
            "batch.expired",
            "batch.cancelled"
        ])
    );

    let deleted = app.delete(&format!("/v1/webhook-endpoints/{id}")).await;
    deleted.expect(204);
    assert!(deleted.body.is_null());
    let left = app.get("/v1/webhook-endpoints").await;
    assert_eq!(left.body["data"].as_array().unwrap().len(), 1);
    app.delete(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .expect_problem(404, "webhook-not-found");
    app.post_raw(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), "")
        .await
        .expect_problem(404, "webhook-not-found");
}

#[tokio::test]
async fn another_tenants_endpoints_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let id = app
        .post("/v1/webhook-endpoints", &json!({"url": RECEIVER}))
        .await
        .expect(201)
        .id();
    let other = app.tenant("globex").await;
    let listed = other.get("/v1/webhook-endpoints").await;
    assert_eq!(listed.body["data"], json!([]));
    other
        .delete(&format!("/v1/webhook-endpoints/{id}"))
        .await
        .expect_problem(404, "webhook-not-found");
    other
        .post_raw(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), "")
        .await
        .expect_problem(404, "webhook-not-found");
    assert_eq!(
        app.get("/v1/webhook-endpoints").await.body["data"][0]["id"],
        id.as_str()
    );
}

#[tokio::test]
async fn an_endpoint_must_be_a_valid_reachable_url() {
    let app = TestApp::spawn().await;
    let refused = app
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": "http://192.168.1.1/hook"}),
        )
        .await;
    refused.expect_problem(422, "invalid-webhook");
    app.post(
        "/v1/webhook-endpoints",
        &json!({"url": RECEIVER, "events": []}),
    )
    .await
    .expect_problem(422, "invalid-webhook");
    for body in [
        json!({"url": "not a url"}),
        json!({"url": RECEIVER, "events": ["started"]}),
        json!({"address": RECEIVER}),
    ] {
        app.post("/v1/webhook-endpoints", &body)
            .await
            .expect_problem(422, "invalid-request");
    }
    assert_eq!(
        app.get("/v1/webhook-endpoints").await.body["data"],
        json!([])
    );
}

#[tokio::test]
async fn jobs_naming_no_webhook_go_to_the_tenants_endpoints() {
    let app = TestApp::spawn().await;
    let before = app.submit_ok(&chat("before the endpoint")).await;
    app.post("/v1/webhook-endpoints", &json!({"url": RECEIVER}))
        .await
        .expect(201);
    let after = app.submit_ok(&chat("after the endpoint")).await;
    app.cancel(&before).await.expect(200);
    app.cancel(&after).await.expect(200);
    assert_eq!(app.announced_jobs().await, vec![after]);
}

/// Opens a delivery of the job's `canceled` event, with one failed
/// attempt, as the webhooks role would have; its id.
async fn failed_delivery(app: &TestApp, job: &str) -> String {
    let job = job.parse().unwrap();
    let delivery = app
        .webhooks
        .open_delivery(&NewDelivery {
            tenant_id: app.tenant_id.clone(),
            job_id: job,
            webhook_id: webhook_id(job, EventKind::Canceled),
            event: EventKind::Canceled,
            endpoint_id: None,
            url: RECEIVER.to_owned(),
            body: "{}".to_owned(),
            trace_id: None,
        })
        .await
        .unwrap();
    let attempt = Attempt {
        delivery_id: delivery.id.clone(),
        attempt: 1,
        attempted_at: Utc::now(),
        status_code: Some(500),
        latency_ms: 12,
        error: Some("HTTP 500".to_owned()),
        next_attempt_at: None,
    };
    app.webhooks
        .record_attempt(&attempt, DeliveryState::Exhausted)
        .await
        .unwrap();
    delivery.id
}

#[tokio::test]
async fn a_jobs_deliveries_list_every_attempt_and_can_be_redelivered() {
    let app = TestApp::spawn().await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    let job = app
        .submit_ok(&hooked("deliver me", json!({"url": RECEIVER})))
        .await;
    let none = app.get(&format!("/v1/jobs/{job}/deliveries")).await;
    none.expect(200);
    assert_eq!(none.body, json!({"object": "list", "data": []}));

    let delivery = failed_delivery(&app, &job).await;
    let listed = app.get(&format!("/v1/jobs/{job}/deliveries")).await;
    listed.expect(200);
    let entry = &listed.body["data"][0];
    assert_eq!(entry["id"], delivery.as_str());
    assert_eq!(entry["webhook_id"], format!("msg_{job}_canceled"));
    assert_eq!(entry["state"], "exhausted");
    assert_eq!(entry["attempt_count"], 1);
    assert_eq!(entry["attempts"][0]["status_code"], 500);
    assert!(entry.get("body").is_none(), "{entry}");

    let reply = app
        .post_raw(
            &format!("/v1/jobs/{job}/deliveries/{delivery}/redeliver"),
            "",
        )
        .await;
    reply.expect(202);
    assert_eq!(reply.body["id"], delivery.as_str());
    assert_eq!(reply.body["state"], "pending");
    let messages = app.take_webhook_messages().await;
    assert!(
        matches!(&messages[..], [WebhookMessage::Retry { delivery_id, attempt: 2, .. }]
                 if *delivery_id == delivery),
        "{messages:?}"
    );
    let listed = app.get(&format!("/v1/jobs/{job}/deliveries")).await;
    assert_eq!(listed.body["data"][0]["state"], "pending");
}

#[tokio::test]
async fn another_tenants_deliveries_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let job = app.submit_ok(&chat("x")).await;
    let delivery = failed_delivery(&app, &job).await;
    let other = app.tenant("globex").await;
    let listed = other.get(&format!("/v1/jobs/{job}/deliveries")).await;
    assert_eq!(listed.body["data"], json!([]), "{listed:?}");
    other
        .post_raw(
            &format!("/v1/jobs/{job}/deliveries/{delivery}/redeliver"),
            "",
        )
        .await
        .expect_problem(404, "webhook-not-found");
    // Nor can a delivery be reached through another job's id.
    let another_job = app.submit_ok(&chat("y")).await;
    app.post_raw(
        &format!("/v1/jobs/{another_job}/deliveries/{delivery}/redeliver"),
        "",
    )
    .await
    .expect_problem(404, "webhook-not-found");
    app.post_raw(&format!("/v1/jobs/{job}/deliveries/nope/redeliver"), "")
        .await
        .expect_problem(404, "webhook-not-found");
    app.get("/v1/jobs/not-a-job/deliveries")
        .await
        .expect_problem(404, "job-not-found");
    assert!(app.take_webhook_messages().await.is_empty());
}
