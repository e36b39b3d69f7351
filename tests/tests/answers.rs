//! Jobs of all three endpoints get their own answers, and completions go
//! out batched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, StackOptions};
use sluice_mock::answer_text;

fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 8, "messages": [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": prompt}]}})
}

#[tokio::test]
async fn each_endpoint_answers_each_job_with_its_own_result() {
    let (_stack, client) = acme_stack(StackOptions::default()).await;

    let chat_ids: Vec<String> = futures::future::join_all((0..6).map(|i| {
        let client = client.clone();
        async move { client.submit(&chat(&format!("question {i}"))).await }
    }))
    .await;
    let completion_ids = client
        .submit_batch(
            (0..6)
                .map(|i| json!({"endpoint": "/v1/completions", "metadata": {"feature": "tags"},
                    "body": {"model": "mock-small", "max_tokens": 5, "prompt": format!("prompt {i}")}}))
                .collect(),
        )
        .await;
    let embedding_ids = client
        .submit_batch(
            (0..4)
                .map(|i| {
                    json!({"endpoint": "/v1/embeddings",
                    "body": {"model": "mock-embed", "input": format!("text {i}")}})
                })
                .collect(),
        )
        .await;

    for (i, job) in client.wait_all(&chat_ids, 30).await.iter().enumerate() {
        assert_eq!(job["status"], "succeeded", "{job}");
        let text = job["result"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert!(
            text.starts_with(&answer_text(&format!("question {i}"))),
            "{text}"
        );
        assert_eq!(job["usage"]["completion_tokens"], 8);
        assert_eq!(job["attempts"], 1);
        assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    }
    for (i, job) in client
        .wait_all(&completion_ids, 30)
        .await
        .iter()
        .enumerate()
    {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["endpoint"], "/v1/completions");
        assert_eq!(job["metadata"]["feature"], "tags");
        let choices = job["result"]["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1, "one choice per job: {job}");
        let text = choices[0]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&answer_text(&format!("prompt {i}"))),
            "{text}"
        );
        assert_eq!(job["usage"]["completion_tokens"], 5, "{job}");
    }
    for (i, job) in client.wait_all(&embedding_ids, 30).await.iter().enumerate() {
        assert_eq!(job["status"], "succeeded", "{job}");
        let got = job["result"]["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .clone();
        let want = sluice_mock::text::embedding(&format!("text {i}"), 16);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g.as_f64().unwrap() - f64::from(w)).abs() < 1e-6);
        }
    }
}

#[tokio::test]
async fn completions_go_out_as_batched_array_calls() {
    // A long enough wait that the whole burst lands in one or two batches.
    let (stack, client) = acme_stack(StackOptions {
        worker_toml: "max_batch_size = 32\nmax_wait_ms = { standard = 300 }".into(),
        ..StackOptions::default()
    })
    .await;
    let prompts: Vec<String> = (0..64)
        .map(|i| format!("classify item number {i}"))
        .collect();
    let ids = client
        .submit_batch(
            prompts
                .iter()
                .map(|p| json!({"endpoint": "/v1/completions", "body": {"model": "mock-small", "max_tokens": 3, "prompt": p}}))
                .collect(),
        )
        .await;
    let jobs = client.wait_all(&ids, 30).await;
    for (job, prompt) in jobs.iter().zip(&prompts) {
        let text = job["result"]["choices"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(&answer_text(prompt)), "{prompt}: {job}");
    }
    let stats = stack.mock_stats().await;
    let completions = &stats["by_endpoint"]["/v1/completions"];
    assert_eq!(completions["prompts"], 64, "{stats}");
    let requests = completions["requests"].as_u64().unwrap();
    assert!(
        requests <= 8,
        "64 prompts took {requests} calls: not batched ({stats})"
    );
    // Usage per job sums exactly to what the provider reported.
    let prompt_tokens: u64 = jobs
        .iter()
        .map(|j| j["usage"]["prompt_tokens"].as_u64().unwrap())
        .sum();
    let completion_tokens: u64 = jobs
        .iter()
        .map(|j| j["usage"]["completion_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(
        prompt_tokens,
        completions["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        completion_tokens,
        completions["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_chat_job_ends_without_waiting_for_the_slowest_of_its_batch() {
    // 1.5 ms per generated token: 2,000 tokens take 3 s, 2 tokens nothing.
    // A long batch wait puts both jobs in one batch.
    let (_stack, client) = acme_stack(StackOptions {
        mock_args: vec!["--latency-per-completion-token-us".into(), "1500".into()],
        worker_toml: "max_wait_ms = { interactive = 400, standard = 400, batch = 400 }".into(),
        ..StackOptions::default()
    })
    .await;
    let job = |prompt: &str, max_tokens: u64| {
        json!({"body": {"model": "mock-small", "max_tokens": max_tokens, "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": prompt}]}})
    };
    let ids = client
        .submit_batch(vec![job("a long essay", 2_000), job("yes or no", 2)])
        .await;
    let fast = client.wait(&ids[1], 30).await;
    assert_eq!(fast["status"], "succeeded", "{fast}");
    // Its batch-mate's call is still going: the short answer did not wait
    // for it.
    let slow = client.job(&ids[0]).await.body;
    assert_eq!(slow["status"], "running", "{slow}");
    let slow = client.wait(&ids[0], 30).await;
    assert_eq!(slow["status"], "succeeded", "{slow}");
    assert_eq!(slow["usage"]["completion_tokens"], 2_000);
}
