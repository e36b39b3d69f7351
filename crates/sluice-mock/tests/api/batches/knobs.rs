//! The batch knobs that make batches misbehave: hold, refusal, the
//! enqueued-token quota and failed lines.

use serde_json::{json, Value};
use sluice_mock::{BatchOptions, Ratio, Tier};

use super::*;
use crate::helpers::TestMock;

#[tokio::test(start_paused = true)]
async fn a_held_batch_stays_in_progress_until_cancelled() {
    let mock = TestMock::with(options(BatchOptions {
        hold: Ratio::ONE,
        ..BatchOptions::default()
    }));
    let batch = start(&mock, &lines(3)).await;
    advance_to(60_000).await;
    let held = poll(&mock, &batch).await;
    assert_eq!(
        (held["status"].clone(), counts(&held)),
        (json!("in_progress"), (3, 0, 0))
    );
    let id = batch["id"].as_str().unwrap();
    mock.post_full(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    let cancelled = poll(&mock, &batch).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["output_file_id"], Value::Null);
    assert_eq!(file(&mock, &cancelled["error_file_id"]).await.len(), 3);
    assert_eq!(mock.server.bill().total_cost_micros, 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_batch_fails() {
    let mock = TestMock::with(options(BatchOptions {
        refuse: Ratio::ONE,
        ..BatchOptions::default()
    }));
    let batch = start(&mock, &lines(2)).await;
    let failed = poll(&mock, &batch).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"][0]["code"], "refused");
    assert_eq!(failed["errors"]["data"][0]["line"], Value::Null);
}

#[tokio::test(start_paused = true)]
async fn the_enqueued_token_quota_fails_a_batch_that_would_pass_it() {
    // A line is 3 prompt tokens ("question 0") plus 5 completion: 8.
    let mock = TestMock::with(options(BatchOptions {
        max_enqueued_tokens: Some(30),
        ..BatchOptions::default()
    }));
    let first = start(&mock, &lines(3)).await;
    let second = start(&mock, &lines(1)).await;
    let other_model = start(&mock, &[line("x", &chat_body("n", "question 9"))]).await;
    assert_eq!(poll(&mock, &first).await["status"], "in_progress");
    let failed = poll(&mock, &second).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"][0]["code"], "token_limit_exceeded");
    assert!(failed["errors"]["data"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Enqueued token limit reached for m"));
    assert_eq!(poll(&mock, &other_model).await["status"], "in_progress");
    // Once the first is done, its tokens are free again.
    advance_to(1_000).await;
    assert_eq!(poll(&mock, &first).await["status"], "completed");
    let third = start(&mock, &lines(3)).await;
    assert_eq!(poll(&mock, &third).await["status"], "in_progress");
}

#[tokio::test(start_paused = true)]
async fn failed_lines_go_to_the_error_file_unbilled() {
    let mock = TestMock::with(options(BatchOptions {
        line_failure: Ratio::ONE,
        ..BatchOptions::default()
    }));
    let batch = start(&mock, &lines(2)).await;
    advance_to(1_000).await;
    let done = poll(&mock, &batch).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(counts(&done), (2, 0, 2));
    assert_eq!(done["output_file_id"], Value::Null);
    for e in file(&mock, &done["error_file_id"]).await {
        assert_eq!(e["error"], Value::Null);
        assert_eq!(e["response"]["status_code"], 500);
        assert_eq!(e["response"]["body"]["error"]["type"], "server_error");
    }
    assert_eq!(mock.server.bill().total_cost_micros, 0);

    // A line the route refuses is its 400, in the error file too.
    let mock = self::mock();
    let bad = chat_body("m", "q");
    let mut bad_tokens = bad.clone();
    bad_tokens["max_tokens"] = json!(u64::MAX);
    let batch = start(&mock, &[line("good", &bad), line("bad", &bad_tokens)]).await;
    advance_to(1_000).await;
    let done = poll(&mock, &batch).await;
    assert_eq!(counts(&done), (2, 1, 1));
    let errors = file(&mock, &done["error_file_id"]).await;
    assert_eq!(errors[0]["custom_id"], "bad");
    assert_eq!(errors[0]["response"]["status_code"], 400);
    assert_eq!(
        errors[0]["response"]["body"]["error"]["param"],
        "max_tokens"
    );
    assert_eq!(mock.server.bill().tier(Tier::Batch).requests, 1);
}
