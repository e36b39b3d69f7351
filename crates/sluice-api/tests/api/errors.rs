//! Bad requests get a specific problem+json, and nothing of them is
//! queued: malformed JSON, invalid envelopes, models, endpoints, sizes,
//! keys and routes.

use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::json;

use crate::support::{chat, with, TestApp};

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = TestApp::spawn().await;
    for body in ["{\"body\": ", "not json", ""] {
        let reply = app.post_raw("/v1/jobs", body).await;
        reply.expect_problem(400, "malformed-json");
    }
    app.post_raw("/v1/jobs/batch", "[")
        .await
        .expect_problem(400, "malformed-json");
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn an_invalid_envelope_is_a_422_that_says_what_is_wrong() {
    let app = TestApp::spawn().await;
    let cases = [
        (with(chat("x"), "priorty", json!("batch")), "priorty"),
        (with(chat("x"), "priority", json!("urgent")), "urgent"),
        (with(chat("x"), "deadline_s", json!(-1)), "deadline_s"),
        (
            with(chat("x"), "deadline_s", json!(8 * 86_400)),
            "deadline_s",
        ),
        (json!({"body": "a string"}), "object"),
        (json!({"metadata": {}}), "body"),
        (json!([1, 2]), "job"),
        (
            json!({"body": {"model": "mock-small", "messages": []}}),
            "messages",
        ),
        (
            json!({"endpoint": "/v1/completions", "body": {"model": "mock-small"}}),
            "prompt",
        ),
        (
            json!({"body": {"model": "mock-small", "stream": true,
                            "messages": [{"role": "user", "content": "x"}]}}),
            "stream",
        ),
    ];
    for (job, named) in cases {
        let reply = app.submit(&job).await;
        reply.expect_problem(422, "invalid-request");
        assert!(reply.detail().contains(named), "{named}: {reply:?}");
    }
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn a_job_without_a_model_is_a_422() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": 7, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let reply = app.submit(&json!({ "body": body })).await;
        reply.expect_problem(422, "missing-model");
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_422_that_lists_the_known_ones() {
    let app = TestApp::spawn().await;
    let job =
        json!({"body": {"model": "gpt-nope", "messages": [{"role": "user", "content": "x"}]}});
    let reply = app.submit(&job).await;
    reply.expect_problem(422, "unknown-model");
    assert!(reply.detail().contains("gpt-nope"), "{reply:?}");
    assert!(reply.detail().contains("mock-small"), "{reply:?}");
}

#[tokio::test]
async fn an_unknown_endpoint_is_a_422() {
    let app = TestApp::spawn().await;
    let job = json!({"endpoint": "/v1/images", "body": {"model": "mock-small"}});
    let reply = app.submit(&job).await;
    reply.expect_problem(422, "unknown-endpoint");
    assert!(reply.detail().contains("/v1/images"), "{reply:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = TestApp::builder()
        .toml("[api]\nmax_body_bytes = 1024")
        .spawn()
        .await;
    let huge = chat(&"x".repeat(2_000));
    let reply = app.submit(&huge).await;
    reply.expect_problem(413, "body-too-large");
    assert!(reply.detail().contains("1024"), "{reply:?}");
    app.batch(std::slice::from_ref(&huge))
        .await
        .expect_problem(413, "body-too-large");
    app.post("/v1/chat/completions", &huge["body"])
        .await
        .expect_openai_error(413, "invalid_request_error", None);
    app.submit(&chat("small")).await.expect(202);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_problem_on_every_route() {
    let app = TestApp::builder()
        .toml("[api]\nmax_body_bytes = 1024")
        .spawn()
        .await;
    let huge = json!({"overlap_s": 60, "padding": "x".repeat(2_000)});
    app.post("/v1/webhook-secret", &huge)
        .await
        .expect_problem(413, "body-too-large");
}

/// A request to a route that needs a key, with these headers only.
async fn without_key(app: &TestApp, authorization: Option<&str>) -> crate::support::Reply {
    let mut request = Request::get("/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_is_a_401() {
    let app = TestApp::spawn().await;
    let cases = [
        (None, "missing"),
        (Some("Basic dXNlcjpwYXNz"), "Bearer"),
        (Some("Bearer "), "Bearer"),
        (Some(app.key.as_str()), "Bearer"),
    ];
    for (authorization, named) in cases {
        let reply = without_key(&app, authorization).await;
        reply.expect_problem(401, "unauthorized");
        assert_eq!(reply.header("www-authenticate"), "Bearer");
        assert!(reply.detail().contains(named), "{reply:?}");
    }
    // A submission without a key is refused before its body is read.
    let reply = app
        .send(
            Request::post("/v1/jobs")
                .body(Body::from(chat("x").to_string()))
                .unwrap(),
        )
        .await;
    reply.expect_problem(401, "unauthorized");
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn an_unknown_or_revoked_key_is_a_401() {
    let app = TestApp::spawn().await;
    let unknown = app.with_key("sk-sluice-not-a-real-key");
    unknown
        .submit(&chat("x"))
        .await
        .expect_problem(401, "unauthorized");
    // Revoked before its first use (a checked key is trusted for 5 s).
    let revoked = app.new_key().await;
    app.tenants.revoke_key(&revoked.key_id).unwrap();
    let reply = revoked.submit(&chat("x")).await;
    reply.expect_problem(401, "unauthorized");
    assert!(reply.detail().contains("revoked"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0);
    app.submit(&chat("the tenant's other key works"))
        .await
        .expect(202);
}

#[tokio::test]
async fn every_v1_route_needs_a_key() {
    let app = TestApp::spawn().await;
    let anonymous = app.with_key("");
    let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let routes = [
        (Method::POST, "/v1/jobs".to_owned()),
        (Method::POST, "/v1/jobs/batch".to_owned()),
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::GET, format!("/v1/jobs/{id}/deliveries")),
        (
            Method::POST,
            format!("/v1/jobs/{id}/deliveries/d/redeliver"),
        ),
        (Method::POST, "/v1/webhook-secret".to_owned()),
        (Method::POST, "/v1/webhook-endpoints".to_owned()),
        (Method::GET, "/v1/webhook-endpoints".to_owned()),
        (Method::DELETE, "/v1/webhook-endpoints/e".to_owned()),
        (
            Method::POST,
            "/v1/webhook-endpoints/e/rotate-secret".to_owned(),
        ),
        (Method::GET, "/v1/usage".to_owned()),
        (Method::GET, "/v1/budget".to_owned()),
        (Method::DELETE, "/v1/cache".to_owned()),
    ];
    for (method, path) in routes {
        let reply = anonymous.call(method.clone(), &path, "{}", &[]).await;
        assert_eq!(reply.status, 401, "{method} {path}: {reply:?}");
        reply.expect_problem(401, "unauthorized");
    }
    // The OpenAI-compatible routes answer in OpenAI's shape.
    let openai = [
        (Method::POST, "/v1/chat/completions"),
        (Method::POST, "/v1/completions"),
        (Method::POST, "/v1/embeddings"),
        (Method::GET, "/v1/models"),
        (Method::GET, "/v1/models/mock-small"),
    ];
    for (method, path) in openai {
        let reply = anonymous.call(method.clone(), path, "{}", &[]).await;
        reply.expect_openai_error(401, "invalid_request_error", Some("invalid_api_key"));
        assert_eq!(
            reply.header("www-authenticate"),
            "Bearer",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    for path in ["/v2/jobs", "/v1/jobs/x/y/z", "/"] {
        let reply = app.get(path).await;
        reply.expect_problem(404, "not-found");
        assert!(reply.detail().contains(path), "{reply:?}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_problem() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/jobs").await;
    reply.expect_problem(405, "method-not-allowed");
    assert!(reply.detail().contains("GET"), "{reply:?}");
}
