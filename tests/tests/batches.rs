//! The Batch API on the real services: a batch whose driver (the API
//! process making its lines into jobs) is SIGKILLed mid-way completes after
//! a restart, with every line run exactly once; a batch's end reaches the
//! tenant's webhook endpoints, signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::receiver::{Behaviour, Receiver};
use sluice_e2e::{acme_stack, Client, Stack, StackOptions};

/// A chat line of its own (no two alike, so none is answered by another).
fn line(i: usize) -> String {
    json!({"custom_id": format!("line-{i}"), "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "mock-small", "max_tokens": 2,
                    "messages": [{"role": "user", "content": format!("line number {i}")}]}})
    .to_string()
}

/// Lines the API made into jobs, from its metrics.
async fn lines_made(client: &Client) -> u64 {
    let metrics = client.get("/metrics").await.body;
    metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("sluice_batch_lines_made_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn batch(client: &Client, id: &str) -> Value {
    let reply = client.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

#[tokio::test]
async fn a_batch_whose_api_is_killed_mid_expansion_completes_with_every_line_run_once() {
    // 6,000 lines by default (24 chunks, so the kill lands mid-way);
    // `SLUICE_TEST_BATCH_LINES=50000` runs it at OpenAI's limit.
    let lines_env = std::env::var("SLUICE_TEST_BATCH_LINES").ok();
    let lines: usize = lines_env.and_then(|n| n.parse().ok()).unwrap_or(6_000);
    // A short lease, so the restarted API takes the batch over soon.
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 1,
        extra_toml: "[batches]\npoll_ms = 50\nlease_s = 2\n".into(),
        ..StackOptions::default()
    })
    .await;
    let content: String = (0..lines).map(|i| line(i) + "\n").collect();
    let input = client.upload_batch_input(content.as_bytes()).await;
    let created = client
        .post(
            "/v1/batches",
            &json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    // Kill the API as soon as it has made some lines into jobs, not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let made = loop {
        let made = lines_made(&client).await;
        if made > 0 {
            break made;
        }
        assert!(Instant::now() < deadline, "no line was made into a job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stack.api.take().unwrap().kill().await;
    assert!(
        made < lines as u64,
        "the expansion ended before the kill ({made} lines)"
    );

    stack.start_api().await;
    let client = Client::new(&stack.api_url(), &client.key);
    let deadline = Instant::now() + Duration::from_secs(180 + lines as u64 / 100);
    let done = loop {
        let b = batch(&client, &id).await;
        let ended = ["completed", "failed", "expired", "cancelled"];
        if ended.iter().any(|s| b["status"] == *s) {
            break b;
        }
        assert!(Instant::now() < deadline, "the batch did not end: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": lines, "completed": lines, "failed": 0})
    );
    // Each line was run once: the provider saw one call per line.
    let stats = stack.mock_stats().await;
    assert_eq!(
        stats["by_endpoint"]["/v1/chat/completions"]["requests"], lines,
        "{stats}"
    );
    let output = client
        .get(&format!(
            "/v1/files/{}/content",
            done["output_file_id"].as_str().unwrap()
        ))
        .await;
    let text = output.body.as_str().unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), lines);
    drop::<Stack>(stack);
}

/// Creates a batch of `lines` (JSONL lines); its id.
async fn create_batch(client: &Client, lines: &[String]) -> String {
    let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let input = client.upload_batch_input(content.as_bytes()).await;
    let created = client
        .post(
            "/v1/batches",
            &json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_batchs_end_reaches_the_tenants_endpoints_signed() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (stack, client) = acme_stack(StackOptions {
        workers: 1,
        webhooks: true,
        extra_toml: "[batches]\npoll_ms = 50\n".into(),
        ..StackOptions::default()
    })
    .await;
    let r = client
        .post(
            "/v1/webhook-endpoints",
            &json!({"url": receiver.url, "events": ["batch.completed", "batch.failed"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    *receiver.secret.lock().unwrap() = r.body["secret"].as_str().unwrap().to_owned();

    let done = create_batch(&client, &[line(1), line(2), line(3)]).await;
    let failed = create_batch(&client, &["{not json".to_owned()]).await;
    let seen = receiver.until(60, |s| s.len() >= 2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let by_type: std::collections::HashMap<String, &sluice_e2e::receiver::Seen> = seen
        .iter()
        .map(|s| (s.body["type"].as_str().unwrap().to_owned(), s))
        .collect();
    let completed = by_type["batch.completed"];
    assert!(completed.valid_signature);
    let ulid = done.strip_prefix("batch_").unwrap();
    assert_eq!(completed.id, format!("msg_{ulid}_batch.completed"));
    assert_eq!(completed.body["data"]["id"], done.as_str());
    assert_eq!(completed.body["data"]["request_counts"]["completed"], 3);
    let output = completed.body["data"]["output_file_id"].as_str().unwrap();
    assert_eq!(client.get(&format!("/v1/files/{output}")).await.status, 200);
    let bad = by_type["batch.failed"];
    assert!(bad.valid_signature);
    assert_eq!(bad.body["data"]["id"], failed.as_str());
    assert_eq!(bad.body["data"]["errors"][0]["code"], "invalid_json_line");
    // Its own endpoint's choice: the batch's lines sent no job events.
    assert_eq!(receiver.seen().len(), 2);

    // An operator sees the tenant's batches, with counts and cost.
    let listed = stack
        .sluice(&["admin", "batches", "--tenant", "acme"])
        .await;
    let row = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    let fields: Vec<String> = row(&done).split_whitespace().map(str::to_owned).collect();
    assert_eq!(fields[1..5], ["completed", "3", "3", "0"], "{listed}");
    assert!(row(&failed).contains("failed"), "{listed}");
}
