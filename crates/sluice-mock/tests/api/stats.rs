use serde_json::json;
use sluice_mock::{count_tokens, EndpointStats, MockStats};

use crate::helpers::TestMock;

#[tokio::test]
async fn counts_requests_and_prompts_separately() {
    let mock = TestMock::new();
    let batch = ["a", "bb", "ccc", "dddd", "eeeee"];
    mock.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": batch, "max_tokens": 10}),
    )
    .await;
    mock.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": "single", "max_tokens": 10}),
    )
    .await;
    mock.post(
        "/v1/chat/completions",
        &json!({"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    mock.post(
        "/v1/embeddings",
        &json!({"model": "e", "input": ["x", "y"]}),
    )
    .await;
    // Rejected requests are not served, so not counted.
    mock.post("/v1/completions", &json!({"model": "m"})).await;

    let stats = mock.server.stats();
    let batch_tokens: u64 = batch.iter().map(|p| count_tokens(p)).sum();
    let completions = EndpointStats {
        requests: 2,
        prompts: 6,
        prompt_tokens: batch_tokens + count_tokens("single"),
        completion_tokens: 60,
    };
    assert_eq!(stats.endpoint("/v1/completions"), completions);
    assert_eq!(
        stats.endpoint("/v1/chat/completions"),
        EndpointStats {
            requests: 1,
            prompts: 1,
            prompt_tokens: count_tokens("hello"),
            completion_tokens: 7
        }
    );
    assert_eq!(
        stats.endpoint("/v1/embeddings"),
        EndpointStats {
            requests: 1,
            prompts: 2,
            prompt_tokens: 2,
            completion_tokens: 0
        }
    );
    assert_eq!(stats.total.requests, 4);
    assert_eq!(stats.total.prompts, 9);
    assert_eq!(
        stats.total.prompt_tokens,
        completions.prompt_tokens + count_tokens("hello") + 2
    );
    assert_eq!(stats.total.completion_tokens, 67);
    assert_eq!(stats.by_endpoint.len(), 3);
}

#[tokio::test]
async fn stats_endpoint_and_reset() {
    let mock = TestMock::new();
    mock.post(
        "/v1/completions",
        &json!({"model": "m", "prompt": ["a", "b"]}),
    )
    .await;

    let (status, body) = mock.get("/mock/stats").await;
    assert_eq!(status, 200);
    let over_http: MockStats = serde_json::from_value(body).unwrap();
    assert_eq!(over_http, mock.server.stats());
    assert_eq!(over_http.total.requests, 1);
    assert_eq!(over_http.total.prompts, 2);
    assert_eq!(over_http.total.completion_tokens, 32);

    let (status, _) = mock.post("/mock/reset", &json!({})).await;
    assert!(status.is_success());
    assert_eq!(mock.server.stats(), MockStats::default());
    let (_, body) = mock.get("/mock/stats").await;
    assert_eq!(
        serde_json::from_value::<MockStats>(body).unwrap(),
        MockStats::default()
    );
}
