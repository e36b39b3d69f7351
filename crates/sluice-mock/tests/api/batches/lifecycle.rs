//! A batch from upload to results, its lines equal to real-time answers
//! and billed at the batch price; invalid input, cancel, expiry, listing,
//! reset, and the Files routes.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_mock::{BatchOptions, MockOptions, Price, RateLimits, Tier};

use super::*;
use crate::helpers::{openai_cost, TestMock};

#[tokio::test(start_paused = true)]
async fn a_batch_runs_from_upload_to_results_like_real_time() {
    let mock = mock();
    let input = lines(5);
    let upload = mock.upload("in.jsonl", "batch", &file_text(&input)).await;
    assert_eq!(upload.body["object"], "file");
    assert_eq!(upload.body["purpose"], "batch");
    assert_eq!(upload.body["filename"], "in.jsonl");
    assert_eq!(upload.body["bytes"], file_text(&input).len());
    let file_id = upload.body["id"].as_str().unwrap();
    assert!(file_id.starts_with("file-"));
    let (_, listed) = mock.get(&format!("/v1/files/{file_id}")).await;
    assert_eq!(listed, upload.body);
    let content = mock
        .get_with(&format!("/v1/files/{file_id}/content"), &[])
        .await;
    assert_eq!(content.text, file_text(&input));

    let batch = start(&mock, &input).await;
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["endpoint"], "/v1/chat/completions");
    assert_eq!(batch["completion_window"], "24h");
    assert_eq!(batch["metadata"], json!({"job": "test"}));
    assert_eq!(batch["errors"], Value::Null);
    assert!(batch["id"].as_str().unwrap().starts_with("batch_"));
    assert_eq!(
        batch["expires_at"].as_u64(),
        Some(batch["created_at"].as_u64().unwrap() + 86_400)
    );
    assert_eq!(counts(&batch), (0, 0, 0));

    let now = poll(&mock, &batch).await;
    assert_eq!(now["status"], "in_progress");
    assert_eq!(counts(&now), (5, 0, 0));
    // Lines finish at 1/6, 2/6, … of the second: three by half of it.
    advance_to(500).await;
    let half = poll(&mock, &batch).await;
    assert_eq!(
        (half["status"].clone(), counts(&half)),
        (json!("in_progress"), (5, 3, 0))
    );
    assert_eq!(mock.server.bill().tier(Tier::Batch).requests, 3);
    advance_to(400).await;
    let finalizing = poll(&mock, &batch).await;
    assert_eq!(finalizing["status"], "finalizing");
    assert!(finalizing["finalizing_at"].is_u64());
    assert_eq!(finalizing["output_file_id"], Value::Null);
    advance_to(100).await;
    let done = poll(&mock, &batch).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(counts(&done), (5, 5, 0));
    assert!(done["completed_at"].is_u64() && done["in_progress_at"].is_u64());
    assert_eq!(done["error_file_id"], Value::Null);

    let output = file(&mock, &done["output_file_id"]).await;
    let (_, output_file) = mock
        .get(&format!(
            "/v1/files/{}",
            done["output_file_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(output_file["purpose"], "batch_output");
    let by_id: BTreeMap<String, Value> = output
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_owned(), l.clone()))
        .collect();
    assert_eq!(by_id.len(), 5);

    // The bill: each line once, at the batch price, nothing real-time.
    let batch_price = Price::DEFAULT.half();
    let expected: u64 = output
        .iter()
        .map(|l| {
            let usage = &l["response"]["body"]["usage"];
            openai_cost(
                &batch_price,
                usage["prompt_tokens"].as_u64().unwrap(),
                0,
                usage["completion_tokens"].as_u64().unwrap(),
            )
        })
        .sum();
    let bill = mock.server.bill();
    assert_eq!(bill.tier(Tier::Batch).requests, 5);
    assert_eq!(bill.tier(Tier::Batch).cost_micros, expected);
    assert_eq!(bill.total_cost_micros, expected);
    assert_eq!(bill.model("m").tier(Tier::Batch).cost_micros, expected);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_, costs) = mock
        .get(&format!(
            "/v1/organization/costs?start_time={}",
            now - 86_400
        ))
        .await;
    let billed: f64 = costs["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|bucket| bucket["results"].as_array().unwrap().clone())
        .map(|r| r["amount"]["value"].as_f64().unwrap())
        .sum();
    assert_eq!(
        (billed * 1e6).round() as u64,
        expected,
        "the Costs API counts batch lines"
    );
    let stats = mock.server.stats();
    assert_eq!(stats.total.requests, 0);
    assert_eq!(stats.batches.status("completed"), 1);
    assert_eq!(stats.batches.lines.succeeded, 5);

    // Each line is the real-time answer to the same body.
    for (i, sent) in input.iter().enumerate() {
        let got = &by_id[&format!("l{i}")];
        assert!(got["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(got["error"], Value::Null);
        assert_eq!(got["response"]["status_code"], 200);
        assert!(got["response"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_"));
        let mut answered = got["response"]["body"].clone();
        let mut real_time = mock.post("/v1/chat/completions", &sent["body"]).await.1;
        for body in [&mut answered, &mut real_time] {
            body.as_object_mut().unwrap().remove("created");
        }
        assert_eq!(answered, real_time);
    }
}

#[tokio::test(start_paused = true)]
async fn an_invalid_file_fails_the_batch_with_line_numbers() {
    let mock = mock();
    let mut input = lines(2);
    input.push(
        json!({"custom_id": "l0", "method": "POST", "url": "/v1/chat/completions",
        "body": chat_body("m", "again")}),
    );
    input.push(line("other", &chat_body("n", "another model")));
    let batch = start(&mock, &input).await;
    assert_eq!(batch["status"], "validating");
    let failed = poll(&mock, &batch).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["failed_at"].is_u64());
    assert_eq!(counts(&failed), (0, 0, 0));
    assert_eq!(failed["errors"]["object"], "list");
    let errors: Vec<(String, u64)> = failed["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_owned(),
                e["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("duplicate_custom_id".to_owned(), 3),
            ("mismatched_model".to_owned(), 4)
        ]
    );
    advance_to(5_000).await;
    assert_eq!(poll(&mock, &batch).await["status"], "failed");
    assert_eq!(mock.server.bill().total_cost_micros, 0);

    // What the request itself gets wrong is a 400 (or 404) at once.
    let file_id = mock
        .upload("in.jsonl", "batch", &file_text(&lines(1)))
        .await
        .body["id"]
        .clone();
    for (body, status) in [
        (
            json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            404,
        ),
        (
            json!({"input_file_id": file_id, "endpoint": "/v1/responses", "completion_window": "24h"}),
            400,
        ),
        (
            json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "1h"}),
            400,
        ),
        (
            json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            400,
        ),
    ] {
        let reply = mock.post_full("/v1/batches", &body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert!(reply.body["error"]["message"].is_string());
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_keeps_the_lines_done_and_cancels_the_rest() {
    let mock = mock();
    let batch = start(&mock, &lines(4)).await;
    let id = batch["id"].as_str().unwrap();
    // Lines finish at 200, 400, 600 and 800 ms.
    advance_to(500).await;
    let cancelling = mock
        .post_full(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        cancelling.body["status"], "cancelling",
        "{}",
        cancelling.body
    );
    assert!(cancelling.body["cancelling_at"].is_u64());
    advance_to(1_000).await;
    let cancelled = poll(&mock, &batch).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_u64());
    assert_eq!(counts(&cancelled), (4, 2, 0));
    assert_eq!(file(&mock, &cancelled["output_file_id"]).await.len(), 2);
    let errors = file(&mock, &cancelled["error_file_id"]).await;
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert_eq!(e["response"], Value::Null);
        assert_eq!(e["error"]["code"], "batch_cancelled");
    }
    assert_eq!(mock.server.bill().tier(Tier::Batch).requests, 2);
    let again = mock
        .post_full(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, 400);
    let unknown = mock
        .post_full("/v1/batches/batch_nope/cancel", &json!({}))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test(start_paused = true)]
async fn a_batch_not_done_in_time_expires_keeping_what_was_done() {
    let mock = TestMock::with(options(BatchOptions {
        expire_after_ms: 500,
        ..BatchOptions::default()
    }));
    let batch = start(&mock, &lines(4)).await;
    advance_to(600).await;
    let expired = poll(&mock, &batch).await;
    assert_eq!(expired["status"], "expired");
    assert!(expired["expired_at"].is_u64());
    assert_eq!(
        expired["expires_at"].as_u64(),
        expired["created_at"].as_u64(),
        "expires half a second after creation"
    );
    assert_eq!(counts(&expired), (4, 2, 0));
    assert_eq!(file(&mock, &expired["output_file_id"]).await.len(), 2);
    let errors = file(&mock, &expired["error_file_id"]).await;
    assert!(errors.iter().all(|e| e["error"]["code"] == "batch_expired"));
    assert_eq!(errors.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn lines_pass_no_rate_limit_and_batches_list_newest_first() {
    let options = MockOptions {
        batch: BatchOptions {
            turnaround_ms: 0,
            ..BatchOptions::default()
        },
        rate_limits: RateLimits {
            requests_per_minute: Some(1),
            ..RateLimits::default()
        },
        ..MockOptions::default()
    };
    let mock = TestMock::with(options);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(start(&mock, &lines(4)).await["id"].clone());
    }
    let (_, page) = mock.get("/v1/batches?limit=2").await;
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"][0]["id"], ids[2]);
    assert_eq!(page["data"][1]["id"], ids[1]);
    assert_eq!(page["data"][0]["status"], "completed");
    assert_eq!(
        (page["first_id"].clone(), page["has_more"].clone()),
        (ids[2].clone(), json!(true))
    );
    let after = page["last_id"].as_str().unwrap();
    let (_, rest) = mock
        .get(&format!("/v1/batches?limit=2&after={after}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        (rest["data"][0]["id"].clone(), rest["has_more"].clone()),
        (ids[0].clone(), json!(false))
    );

    assert_eq!(mock.server.bill().tier(Tier::Batch).requests, 12);
    let reply = mock
        .post_full("/v1/chat/completions", &chat_body("m", "q"))
        .await;
    assert_eq!(reply.status, 200, "the minute's one request is left");

    // A reset forgets files and batches.
    let file_id = mock.upload("x.jsonl", "batch", "{}\n").await.body["id"].clone();
    mock.post("/mock/reset", &json!({})).await;
    let (status, _) = mock
        .get(&format!("/v1/files/{}", file_id.as_str().unwrap()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = mock
        .get(&format!("/v1/batches/{}", ids[0].as_str().unwrap()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(mock.server.stats().batches, Default::default());
}

#[tokio::test]
async fn files_can_be_listed_and_deleted() {
    let mock = mock();
    let a = mock.upload("a.jsonl", "batch", "{}\n").await.body;
    let b = mock.upload("b.txt", "user_data", "hello").await.body;
    let (_, all) = mock.get("/v1/files").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (_, batch_only) = mock.get("/v1/files?purpose=batch").await;
    assert_eq!(batch_only["data"], json!([a]));
    let gone = mock
        .delete_with(&format!("/v1/files/{}", b["id"].as_str().unwrap()), &[])
        .await;
    assert_eq!(
        gone.body,
        json!({"id": b["id"], "object": "file", "deleted": true})
    );
    let again = mock
        .delete_with(&format!("/v1/files/{}", b["id"].as_str().unwrap()), &[])
        .await;
    assert_eq!(again.status, 404);
    let bad = mock.upload("c.jsonl", "nonsense", "{}").await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["param"].clone()),
        (400, json!("purpose"))
    );
}

#[tokio::test]
async fn the_batch_routes_need_the_key_and_go_down_with_the_mock() {
    let mock = TestMock::with(MockOptions {
        api_key: "sk-test".parse().ok(),
        ..MockOptions::default()
    });
    let anonymous = mock.get_with("/v1/batches", &[]).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], "invalid_api_key");
    let keyed = mock
        .get_with("/v1/batches", &[("authorization", "Bearer sk-test")])
        .await;
    assert_eq!(keyed.status, 200);
    let anthropic = [
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-test"),
    ];
    let listed = mock.get_with("/v1/messages/batches", &anthropic).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let wrong = mock
        .get_with("/v1/messages/batches", &[("x-api-key", "sk-other")])
        .await;
    assert_eq!(wrong.body["error"]["type"], "authentication_error");

    mock.server.set_down(true);
    let down = mock
        .get_with("/v1/files", &[("authorization", "Bearer sk-test")])
        .await;
    assert_eq!(down.status, 503);
    assert_eq!(mock.server.bill().refusals.down_rejections, 1);
}
