//! Every bad input gets a specific problem+json, and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sluice_e2e::{acme_stack, Client, Stack, StackExt, StackOptions};

async fn problem(r: sluice_e2e::Response, status: u16, slug: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.content_type, "application/problem+json", "{r:?}");
    assert_eq!(r.body["type"], format!("/problems/{slug}"), "{r:?}");
    assert_eq!(r.body["status"], status);
    assert!(!r.body["detail"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_get_specific_problems() {
    let (stack, client) = acme_stack(StackOptions {
        api_toml: "max_body_bytes = 65536".into(),
        ..StackOptions::default()
    })
    .await;

    problem(
        client.post_raw("/v1/jobs", "{\"body\": ").await,
        400,
        "malformed-json",
    )
    .await;
    problem(
        client
            .post("/v1/jobs", &json!({"body": {"messages": []}}))
            .await,
        422,
        "missing-model",
    )
    .await;
    let r = client
        .post(
            "/v1/jobs",
            &json!({"body": {"model": "gpt-nope", "messages": [{"role": "user", "content": "x"}]}}),
        )
        .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("mock-small"),
        "{r:?}"
    );
    problem(r, 422, "unknown-model").await;
    let r = client
        .post(
            "/v1/jobs",
            &json!({"endpoint": "/v1/images", "body": {"model": "mock-small"}}),
        )
        .await;
    problem(r, 422, "unknown-endpoint").await;
    let r = client
        .post("/v1/jobs", &json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "x"}]}, "priorty": "batch"}))
        .await;
    problem(r, 422, "invalid-request").await;
    let r = client
        .post("/v1/jobs", &json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "x"}]}, "deadline_s": -1}))
        .await;
    problem(r, 422, "invalid-request").await;
    let huge = "x".repeat(70_000);
    let r = client
        .post("/v1/jobs", &json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": huge}]}}))
        .await;
    problem(r, 413, "body-too-large").await;
    let r = client.post("/v1/jobs/batch", &json!({"jobs": []})).await;
    problem(r, 422, "invalid-request").await;
    let r = client
        .post(
            "/v1/jobs/batch",
            &json!({"jobs": [
            {"body": {"model": "mock-small", "messages": [{"role": "user", "content": "ok"}]}},
            {"body": {"model": "nope"}}]}),
        )
        .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("jobs[1]"),
        "{r:?}"
    );
    problem(r, 422, "invalid-request").await;

    problem(
        client.job("01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
        404,
        "job-not-found",
    )
    .await;
    problem(client.job("not-an-id").await, 404, "job-not-found").await;
    problem(client.get("/v2/nothing").await, 404, "not-found").await;

    let anonymous = Client::new(&stack.api_url(), "");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/jobs", stack.api_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    problem(
        anonymous.job("01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
        401,
        "unauthorized",
    )
    .await;
    let wrong = Client::new(&stack.api_url(), "sk-sluice-not-a-real-key");
    problem(
        wrong.get("/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV").await,
        401,
        "unauthorized",
    )
    .await;

    // None of that reached the provider, and a good job still works.
    let id = client
        .submit(&json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "fine"}]}}))
        .await;
    assert_eq!(client.wait(&id, 30).await["status"], "succeeded");
    assert_eq!(stack.mock_stats().await["prompts"], 1);
}

#[tokio::test]
async fn the_operational_endpoints_answer() {
    let stack = Stack::start(StackOptions::default()).await;
    let http = reqwest::Client::new();
    let base = stack.api_url();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_http_request_duration_seconds"),
        "{metrics}"
    );
    let spec: serde_json::Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/v1/jobs"]["post"].is_object(), "{spec}");
    assert!(spec["paths"]["/v1/jobs/{id}"]["get"].is_object());
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_job_and_refuses_a_different_request() {
    let (stack, client) = acme_stack(StackOptions::default()).await;
    let other = stack.tenant("other").await;
    let job =
        json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "once"}]}});
    let send = |c: &Client, body: &serde_json::Value, key: &str| {
        reqwest::Client::new()
            .post(format!("{}/v1/jobs", c.base))
            .bearer_auth(&c.key)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = send(&client, &job, "order-42").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    // The same request again: the same job, not a second one.
    let again = send(&client, &job, "order-42").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same key with another body is refused.
    let changed = json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": "twice"}]}});
    let r = send(&client, &changed, "order-42").await.unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    // Keys are per tenant: another tenant's same key is its own.
    let theirs = send(&other, &job, "order-42").await.unwrap();
    assert_eq!(theirs.status(), 202);
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    assert_eq!(
        other.wait(theirs["id"].as_str().unwrap(), 30).await["status"],
        "succeeded"
    );
    // One job ran for the first tenant.
    assert_eq!(
        client.wait(first["id"].as_str().unwrap(), 30).await["status"],
        "succeeded"
    );
    let bad = send(&client, &job, "").await.unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(
        stack.mock_stats().await["prompts"],
        2,
        "one job per tenant reached the provider"
    );
}
