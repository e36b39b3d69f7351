//! Anthropic's Message Batches on a paused clock: the same engine as
//! OpenAI's batches in Anthropic's shapes, errors at creation, cancel and
//! expiry.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_mock::{BatchOptions, MockOptions, Price, Ratio, Tier};

use crate::helpers::{anthropic_cost, jsonl, Reply, TestMock};

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

fn mock(batch: BatchOptions) -> TestMock {
    TestMock::with(MockOptions {
        batch: BatchOptions {
            turnaround_ms: 1_000,
            ..batch
        },
        ..MockOptions::default()
    })
}

fn params(prompt: &str) -> Value {
    json!({"model": "claude-mock", "max_tokens": 7,
        "messages": [{"role": "user", "content": prompt}]})
}

fn requests(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"custom_id": format!("r-{i}"), "params": params(&format!("ask {i}"))}))
        .collect()
}

async fn create(mock: &TestMock, requests: &[Value]) -> Reply {
    mock.post_with(
        "/v1/messages/batches",
        &json!({"requests": requests}),
        &[VERSION],
    )
    .await
}

async fn poll(mock: &TestMock, id: &str) -> Value {
    let reply = mock
        .get_with(&format!("/v1/messages/batches/{id}"), &[VERSION])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn results(mock: &TestMock, id: &str) -> Vec<Value> {
    let reply = mock
        .get_with(&format!("/v1/messages/batches/{id}/results"), &[VERSION])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    jsonl(&reply.text)
}

async fn advance_to(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_batch_runs_end_to_end_like_real_time() {
    let mock = mock(BatchOptions::default());
    let mut input = requests(2);
    input.push(
        json!({"custom_id": "no-max", "params": {"model": "claude-mock",
        "messages": [{"role": "user", "content": "hi"}]}}),
    );
    let created = create(&mock, &input).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let batch = created.body;
    let id = batch["id"].as_str().unwrap();
    assert!(id.starts_with("msgbatch_"));
    assert_eq!(batch["type"], "message_batch");
    assert_eq!(batch["processing_status"], "in_progress");
    assert_eq!(
        batch["request_counts"],
        json!({"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    );
    assert_eq!(batch["results_url"], Value::Null);
    assert_eq!(batch["ended_at"], Value::Null);
    let created_at = batch["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 20,
        "{created_at}"
    );

    // Lines only leave `processing` when the whole batch ends.
    advance_to(500).await;
    let half = poll(&mock, id).await;
    assert_eq!(half["request_counts"]["processing"], 3);
    let early = mock
        .get_with(&format!("/v1/messages/batches/{id}/results"), &[VERSION])
        .await;
    assert_eq!(early.status, 404);
    assert_eq!(early.body["type"], "error");

    advance_to(500).await;
    let ended = mock
        .get_with(
            &format!("/v1/messages/batches/{id}"),
            &[VERSION, ("host", "mock.test:8090")],
        )
        .await
        .body;
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(
        ended["request_counts"],
        json!({"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0})
    );
    assert!(ended["ended_at"].is_string());
    assert_eq!(
        ended["results_url"],
        format!("http://mock.test:8090/v1/messages/batches/{id}/results")
    );

    let lines = results(&mock, id).await;
    assert_eq!(lines.len(), 3);
    let errored = lines.iter().find(|l| l["custom_id"] == "no-max").unwrap();
    assert_eq!(errored["result"]["type"], "errored");
    assert_eq!(errored["result"]["error"]["type"], "error");
    assert_eq!(
        errored["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );

    let batch_price = Price::DEFAULT.half();
    let mut expected = 0;
    for (i, request) in input.iter().take(2).enumerate() {
        let got = lines
            .iter()
            .find(|l| l["custom_id"] == format!("r-{i}"))
            .unwrap();
        assert_eq!(got["result"]["type"], "succeeded");
        let mut message = got["result"]["message"].clone();
        assert_eq!(message["usage"]["service_tier"], "batch");
        let usage = &message["usage"];
        expected += anthropic_cost(
            &batch_price,
            usage["input_tokens"].as_u64().unwrap(),
            0,
            0,
            usage["output_tokens"].as_u64().unwrap(),
        );
        let mut real_time = mock.messages(&request["params"]).await.body;
        assert_eq!(real_time["usage"]["service_tier"], "standard");
        for body in [&mut message, &mut real_time] {
            body["usage"]["service_tier"] = Value::Null;
        }
        assert_eq!(message, real_time);
    }
    let bill = mock.server.bill();
    assert_eq!(bill.tier(Tier::Batch).requests, 2);
    assert_eq!(bill.tier(Tier::Batch).cost_micros, expected);
    assert_eq!(bill.tier(Tier::Standard).requests, 2);
}

#[tokio::test(start_paused = true)]
async fn cancel_keeps_what_was_done_and_cancels_the_rest() {
    let mock = mock(BatchOptions::default());
    let id = create(&mock, &requests(4)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    advance_to(500).await;
    let canceling = mock
        .post_with(
            &format!("/v1/messages/batches/{id}/cancel"),
            &json!({}),
            &[VERSION],
        )
        .await
        .body;
    assert_eq!(canceling["processing_status"], "canceling");
    assert!(canceling["cancel_initiated_at"].is_string());
    let ended = poll(&mock, &id).await;
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(ended["request_counts"]["succeeded"], 2);
    assert_eq!(ended["request_counts"]["canceled"], 2);
    let kinds: Vec<Value> = results(&mock, &id)
        .await
        .iter()
        .map(|l| l["result"]["type"].clone())
        .collect();
    assert_eq!(kinds, ["succeeded", "succeeded", "canceled", "canceled"]);
    assert_eq!(mock.server.bill().tier(Tier::Batch).requests, 2);

    // Ended, it can be deleted; then it is gone.
    let deleted = mock
        .delete_with(&format!("/v1/messages/batches/{id}"), &[VERSION])
        .await;
    assert_eq!(
        deleted.body,
        json!({"id": id, "type": "message_batch_deleted"})
    );
    let gone = mock
        .get_with(&format!("/v1/messages/batches/{id}"), &[VERSION])
        .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(start_paused = true)]
async fn creation_errors_come_at_once_in_anthropic_shape() {
    let mock = mock(BatchOptions {
        max_enqueued_tokens: Some(20),
        ..BatchOptions::default()
    });
    let duplicate = create(&mock, &[requests(1)[0].clone(), requests(1)[0].clone()]).await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(duplicate.body["type"], "error");
    assert_eq!(duplicate.body["error"]["type"], "invalid_request_error");
    assert_eq!(create(&mock, &[]).await.status, 400);
    let no_version = mock
        .post_full("/v1/messages/batches", &json!({"requests": requests(1)}))
        .await;
    assert_eq!(no_version.status, 400);

    // "ask 0" is 2 tokens, plus 7 to write: 9 a request; two fit, three not.
    assert_eq!(create(&mock, &requests(2)).await.status, 200);
    let over = create(&mock, &requests(1)).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["error"]["type"], "rate_limit_error");

    let refusing = self::mock(BatchOptions {
        refuse: Ratio::ONE,
        ..BatchOptions::default()
    });
    let refused = create(&refusing, &requests(1)).await;
    assert_eq!(refused.status, 400);
    let listed = refusing
        .get_with("/v1/messages/batches", &[VERSION])
        .await
        .body;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test(start_paused = true)]
async fn an_expired_or_held_batch_ends_with_expired_results() {
    let mock = mock(BatchOptions {
        hold: Ratio::ONE,
        expire_after_ms: 5_000,
        ..BatchOptions::default()
    });
    let id = create(&mock, &requests(2)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    advance_to(4_000).await;
    assert_eq!(poll(&mock, &id).await["processing_status"], "in_progress");
    let busy = mock
        .delete_with(&format!("/v1/messages/batches/{id}"), &[VERSION])
        .await;
    assert_eq!(busy.status, 400);
    advance_to(1_000).await;
    let ended = poll(&mock, &id).await;
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(ended["request_counts"]["expired"], 2);
    let kinds: Vec<Value> = results(&mock, &id)
        .await
        .iter()
        .map(|l| l["result"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!({"type": "expired"}), json!({"type": "expired"})]
    );
    assert_eq!(mock.server.stats().batches.lines.expired, 2);
    assert_eq!(mock.server.bill().total_cost_micros, 0);
}
