//! OpenAI's Files and Batches on a paused clock, and what their tests
//! share: uploading a file of chat lines, creating a batch of it, polling
//! it and reading its result files.

mod knobs;
mod lifecycle;

use std::time::Duration;

use serde_json::{json, Value};
use sluice_mock::{BatchOptions, MockOptions};

use crate::helpers::{jsonl, Reply, TestMock};

/// Batches that take a second, lines finishing evenly over it.
fn options(batch: BatchOptions) -> MockOptions {
    MockOptions {
        batch: BatchOptions {
            turnaround_ms: 1_000,
            ..batch
        },
        ..MockOptions::default()
    }
}

fn mock() -> TestMock {
    TestMock::with(options(BatchOptions::default()))
}

fn chat_body(model: &str, prompt: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]})
}

fn line(id: &str, body: &Value) -> Value {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body})
}

fn file_text(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Uploads `lines` and creates a chat batch of them; the batch object.
async fn start(mock: &TestMock, lines: &[Value]) -> Value {
    let file = mock.upload("in.jsonl", "batch", &file_text(lines)).await;
    assert_eq!(file.status, 200, "{}", file.body);
    let created = mock
        .post_full(
            "/v1/batches",
            &json!({"input_file_id": file.body["id"], "endpoint": "/v1/chat/completions",
                "completion_window": "24h", "metadata": {"job": "test"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    created.body
}

/// `n` chat lines `l0`, `l1`, … on model `m`.
fn lines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| line(&format!("l{i}"), &chat_body("m", &format!("question {i}"))))
        .collect()
}

async fn poll(mock: &TestMock, batch: &Value) -> Value {
    let (status, body) = mock
        .get(&format!("/v1/batches/{}", batch["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn file(mock: &TestMock, id: &Value) -> Vec<Value> {
    let reply: Reply = mock
        .get_with(&format!("/v1/files/{}/content", id.as_str().unwrap()), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    jsonl(&reply.text)
}

fn counts(batch: &Value) -> (u64, u64, u64) {
    let c = &batch["request_counts"];
    (
        c["total"].as_u64().unwrap(),
        c["completed"].as_u64().unwrap(),
        c["failed"].as_u64().unwrap(),
    )
}

async fn advance_to(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}
