//! The operational routes: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`, and the trace context every answer carries.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::support::{chat, QueueFault, TestApp};

async fn anonymous_get(app: &TestApp, path: &str) -> crate::support::Reply {
    app.send(Request::get(path).body(Body::empty()).unwrap())
        .await
}

#[tokio::test]
async fn health_needs_no_key() {
    let app = TestApp::spawn().await;
    let reply = anonymous_get(&app, "/healthz").await;
    reply.expect(200);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn ready_while_the_store_answers_even_with_the_broker_down() {
    let app = TestApp::spawn().await;
    let reply = anonymous_get(&app, "/readyz").await;
    reply.expect(200);
    assert_eq!(
        reply.body,
        json!({"status": "ready", "checks": {"rabbitmq": true, "redis": true}})
    );
    let job = app.submit(&chat("before the outage")).await;
    job.expect(202);
    let id = job.body["id"].as_str().unwrap().to_owned();

    // The broker alone down: still ready, since reads need only Redis;
    // a read answers, a submission is refused with 503.
    app.queue.set(QueueFault::Down);
    let reply = anonymous_get(&app, "/readyz").await;
    reply.expect(200);
    assert_eq!(reply.body["status"], "ready");
    assert_eq!(
        reply.body["checks"],
        json!({"rabbitmq": false, "redis": true})
    );
    let read = app.get(&format!("/v1/jobs/{id}")).await;
    read.expect(200);
    assert_eq!(read.body["id"], id.as_str());
    app.submit(&chat("during the outage")).await.expect(503);
    app.queue.set(QueueFault::None);

    app.store.set_down(true);
    let reply = anonymous_get(&app, "/readyz").await;
    reply.expect(503);
    assert_eq!(reply.body["status"], "not ready");
    assert_eq!(
        reply.body["checks"],
        json!({"rabbitmq": true, "redis": false})
    );
    app.store.set_down(false);
    anonymous_get(&app, "/readyz").await.expect(200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_jobs_by_priority() {
    let app = TestApp::spawn().await;
    app.submit(&chat("count me")).await.expect(202);
    app.get("/v1/jobs/not-a-job").await.expect(404);
    let reply = anonymous_get(&app, "/metrics").await;
    reply.expect(200);
    assert!(reply.content_type().starts_with("text/plain"), "{reply:?}");
    let text = reply.body.as_str().unwrap();
    for line in [
        r#"sluice_http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="202"} 1"#,
        r#"sluice_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{id}",status="404"} 1"#,
        r#"sluice_jobs_submitted_total{priority="standard"} 1"#,
        r#"sluice_publish_confirms_total{outcome="ok"} 1"#,
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
}

/// A path of the document with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|part| {
            if part.starts_with('{') {
                "01ARZ3NDEKTSV4RRFFQ69G5FAV"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_the_openapi_document_names_exists() {
    let app = TestApp::spawn().await;
    let doc = anonymous_get(&app, "/openapi.json").await;
    doc.expect(200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{paths:?}");
    for (template, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app
                .call(method.clone(), &concrete(template), "{}", &[])
                .await;
            assert_ne!(reply.status, 405, "{method} {template}: {reply:?}");
            assert_ne!(
                reply.body["type"], "/problems/not-found",
                "{method} {template}: {reply:?}"
            );
            assert!(
                operations[method.as_str().to_lowercase()]["responses"]
                    .get(reply.status.as_str())
                    .is_some(),
                "{method} {template} answered {}, which it does not document",
                reply.status
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_names_every_route() {
    let app = TestApp::spawn().await;
    let doc = anonymous_get(&app, "/openapi.json").await;
    let paths = doc.body["paths"].as_object().unwrap();
    for route in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/files",
        "/v1/files/{id}",
        "/v1/files/{id}/content",
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/batches/{id}/cancel",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
}

#[tokio::test]
async fn errors_are_documented_with_the_content_type_they_are_sent_with() {
    let app = TestApp::spawn().await;
    let doc = anonymous_get(&app, "/openapi.json").await.body.clone();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let openai = path.starts_with("/v1/models")
                || path.starts_with("/v1/files")
                || path.starts_with("/v1/batches")
                || ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
                    .contains(&path.as_str());
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') || path == "/readyz" {
                    continue;
                }
                let content = response["content"].as_object().unwrap();
                let expected = if openai {
                    "application/json"
                } else {
                    "application/problem+json"
                };
                assert!(
                    content.contains_key(expected),
                    "{method} {path} {status}: {content:?}"
                );
                checked += 1;
            }
            // Every route may time out; every keyed route may refuse the key.
            assert!(
                operation["responses"].get("503").is_some(),
                "{method} {path}"
            );
            if operation.get("security").is_some() {
                assert!(
                    operation["responses"].get("401").is_some(),
                    "{method} {path}"
                );
            }
        }
    }
    assert!(checked > 40, "{checked}");
    // The webhook routes that validate a body document their 422.
    for path in ["/v1/webhook-secret", "/v1/webhook-endpoints"] {
        assert!(
            doc["paths"][path]["post"]["responses"].get("422").is_some(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_answer_carries_the_trace_it_joined() {
    let app = TestApp::spawn().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let reply = app
        .post_with("/v1/jobs", &chat("traced"), &[("traceparent", &parent)])
        .await;
    reply.expect(202);
    let answered = reply.header("traceparent");
    assert_eq!(answered.split('-').nth(1), Some(trace), "{answered}");
    assert_ne!(answered, parent, "the API's own span");
    // Without one, the answer still names a trace, and errors carry it too.
    let reply = app.get("/v1/jobs/not-a-job").await;
    let trace_id = reply.header("traceparent").split('-').nth(1).unwrap();
    assert_eq!(trace_id.len(), 32);
}
