use axum::http::StatusCode;
use serde_json::{json, Value};
use sluice_mock::MockOptions;

use crate::helpers::TestMock;

fn assert_openai_error(
    status: StatusCode,
    body: &Value,
    expected: StatusCode,
    param: Option<&str>,
) {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error.get("code").is_some());
    match param {
        Some(param) => assert_eq!(error["param"], param, "{body}"),
        None => assert_eq!(error["param"], Value::Null, "{body}"),
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let mock = TestMock::new();
    for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
        let (status, body) = mock.post_raw(path, "{not json".into(), None).await;
        assert_openai_error(status, &body, StatusCode::BAD_REQUEST, None);
        assert_eq!(body["error"]["code"], "invalid_json");
    }
}

#[tokio::test]
async fn missing_fields_are_400_with_param() {
    let mock = TestMock::new();
    let cases = [
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        ("/v1/chat/completions", json!({"model": "m"}), "messages"),
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": []}),
            "messages",
        ),
        ("/v1/completions", json!({"prompt": "x"}), "model"),
        ("/v1/completions", json!({"model": "m"}), "prompt"),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": []}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "n": 0}),
            "n",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "max_tokens": 100_000_000}),
            "max_tokens",
        ),
        ("/v1/embeddings", json!({"input": "x"}), "model"),
        ("/v1/embeddings", json!({"model": "e"}), "input"),
        (
            "/v1/embeddings",
            json!({"model": "e", "input": "x", "dimensions": 0}),
            "dimensions",
        ),
        (
            "/v1/embeddings",
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
    ];
    for (path, body, param) in cases {
        let (status, response) = mock.post(path, &body).await;
        assert_openai_error(status, &response, StatusCode::BAD_REQUEST, Some(param));
    }
}

#[tokio::test]
async fn wrong_types_are_400() {
    let mock = TestMock::new();
    let cases = [
        ("/v1/completions", json!({"model": "m", "prompt": 42})),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "max_tokens": -1}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": "hi"}),
        ),
        ("/v1/embeddings", json!({"model": "e", "input": [1, "a"]})),
        ("/v1/embeddings", json!({"model": "e", "input": [[1], "a"]})),
    ];
    for (path, body) in cases {
        let (status, response) = mock.post(path, &body).await;
        assert_openai_error(status, &response, StatusCode::BAD_REQUEST, None);
    }
}

#[tokio::test]
async fn unknown_route_is_404_in_openai_shape() {
    let mock = TestMock::new();
    let (status, body) = mock.post("/v1/nope", &json!({})).await;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let mock = TestMock::with(MockOptions {
        api_key: "sk-test".parse().ok(),
        ..MockOptions::default()
    });
    let body = json!({"model": "m", "prompt": "x"}).to_string();
    let (status, response) = mock.post_raw("/v1/completions", body.clone(), None).await;
    assert_openai_error(status, &response, StatusCode::UNAUTHORIZED, None);
    assert_eq!(response["error"]["code"], "invalid_api_key");
    let (status, _) = mock
        .post_raw("/v1/completions", body.clone(), Some("sk-wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = mock.get("/mock/stats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = mock.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);

    let (status, response) = mock
        .post_raw("/v1/completions", body, Some("sk-test"))
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(mock.server.stats().total.requests, 1);
}
