//! The Batch API (`/v1/batches`) in process: a file's lines run as jobs
//! and come back in OpenAI's output format, matched by `custom_id`; a bad
//! file fails with each bad line's number and runs nothing; a cancel keeps
//! what finished; a batch is its tenant's.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_core::webhook::{JobWebhook, WebhookMessage};

use crate::support::files::upload_batch_input;
use crate::support::{eventually, QueueFault, TestApp};

/// Drivers that look at their batches often, for quick tests.
const FAST: &str = "[batches]\npoll_ms = 20\nlease_s = 5\n";

fn line(custom_id: &str, text: &str) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "mock-small", "temperature": 0,
                    "messages": [{"role": "user", "content": text}]}})
    .to_string()
}

fn file(lines: &[String]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

async fn create(app: &TestApp, input: &str) -> Value {
    let reply = app
        .post(
            "/v1/batches",
            &json!({"input_file_id": input, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "metadata": {"team": "search"}}),
        )
        .await;
    reply.expect(200);
    reply.body.clone()
}

/// `n` distinct lines (`custom_id` `{tag}0`, `{tag}1`, …) uploaded and
/// created as a batch; its id.
async fn start(app: &TestApp, n: usize, tag: &str) -> String {
    let lines: Vec<String> = (0..n)
        .map(|i| line(&format!("{tag}{i}"), &format!("{tag} question {i}")))
        .collect();
    let input = upload_batch_input(app, &file(&lines)).await;
    create(app, &input).await["id"].as_str().unwrap().to_owned()
}

/// The batch once it reached `status`.
async fn reaches(app: &TestApp, id: &str, status: &str) -> Value {
    let path = format!("/v1/batches/{id}");
    eventually(&format!("batch {id} {status}"), || async {
        let batch = app.get(&path).await.body;
        (batch["status"] == status).then_some(batch)
    })
    .await
}

/// The `batch.*` events announced for the tenant's endpoints: (type,
/// batch id) of each.
async fn batch_events(app: &TestApp) -> Vec<(String, String)> {
    app.take_webhook_messages()
        .await
        .into_iter()
        .filter_map(|m| match m {
            WebhookMessage::Event(e) if e.kind.as_str().starts_with("batch.") => {
                let body: Value = serde_json::from_str(&e.body).unwrap();
                assert_eq!(e.target, JobWebhook::Endpoints);
                assert_eq!(e.tenant_id, app.tenant_id);
                Some((
                    body["type"].as_str().unwrap().to_owned(),
                    body["data"]["id"].as_str().unwrap().to_owned(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// A file's JSONL lines, by `custom_id`.
async fn read_lines(app: &TestApp, file: &Value) -> BTreeMap<String, Value> {
    let id = file.as_str().expect("a file id");
    let content = app.get(&format!("/v1/files/{id}/content")).await;
    content.expect(200);
    content
        .body
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|l| (l["custom_id"].as_str().unwrap().to_owned(), l))
        .collect()
}

#[tokio::test]
async fn every_line_runs_and_its_answer_comes_back_by_custom_id() {
    let app = TestApp::builder().toml(FAST).worker().spawn().await;
    let lines: Vec<String> = (0..6)
        .map(|i| line(&format!("req-{i}"), &format!("question {i}")))
        .collect();
    let input = upload_batch_input(&app, &file(&lines)).await;
    let created = create(&app, &input).await;
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["metadata"], json!({"team": "search"}));
    assert_eq!(
        created["expires_at"].as_i64().unwrap() - created["created_at"].as_i64().unwrap(),
        86_400
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("batch_"), "{id}");

    let done = reaches(&app, &id, "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 6, "completed": 6, "failed": 0})
    );
    assert!(done["in_progress_at"].is_i64() && done["completed_at"].is_i64());
    assert_eq!(done["error_file_id"], Value::Null);
    assert_eq!(
        batch_events(&app).await,
        [("batch.completed".to_owned(), id.clone())]
    );
    let output = read_lines(&app, &done["output_file_id"]).await;
    assert_eq!(output.len(), 6);
    for i in 0..6 {
        let out = &output[&format!("req-{i}")];
        assert_eq!(out["response"]["status_code"], 200);
        assert_eq!(out["error"], Value::Null);
        // Each line's own answer: the job it ran is the one named.
        let job = app
            .job(out["response"]["request_id"].as_str().unwrap())
            .await
            .body;
        assert_eq!(
            job["metadata"],
            json!({"batch_id": id, "custom_id": format!("req-{i}")})
        );
        assert_eq!(job["priority"], "batch");
        assert_eq!(out["response"]["body"], job["result"]);
    }
    // The cost is what its lines cost, from the ledger.
    let cost: u64 = eventually("the ledger rows", || async {
        let batch = app.get(&format!("/v1/batches/{id}")).await.body;
        let cost = batch["cost_micros"].as_u64().unwrap();
        (batch["usage"]["input_tokens"].as_u64().unwrap() > 0 && cost > 0).then_some(cost)
    })
    .await;
    let mut jobs_cost = 0;
    for out in output.values() {
        let job = app
            .job(out["response"]["request_id"].as_str().unwrap())
            .await
            .body;
        jobs_cost += job["cost_micros"].as_u64().unwrap();
    }
    assert_eq!(cost, jobs_cost);
}

#[tokio::test]
async fn a_file_with_bad_lines_fails_naming_each_and_runs_nothing() {
    let app = TestApp::builder().toml(FAST).spawn().await;
    let lines = [
        line("a", "fine"),
        "{not json".to_owned(),
        line("a", "the same custom_id"),
        line("b", "x").replace("/v1/chat/completions", "/v1/embeddings"),
        line("c", "x").replace("mock-small", "no-such-model"),
        line("d", "fine too"),
    ];
    let input = upload_batch_input(&app, &file(&lines)).await;
    let id = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = reaches(&app, &id, "failed").await;
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
            ("invalid_json_line".to_owned(), 2),
            ("duplicate_custom_id".to_owned(), 3),
            ("invalid_url".to_owned(), 4),
            ("model_not_found".to_owned(), 5),
        ]
    );
    assert_eq!(failed["errors"]["object"], "list");
    assert!(failed["failed_at"].is_i64());
    assert_eq!(failed["request_counts"]["total"], 0);
    // Nothing of it was queued.
    assert_eq!(app.queued_jobs().await, 0);
    assert_eq!(batch_events(&app).await, [("batch.failed".to_owned(), id)]);
}

#[tokio::test]
async fn a_cancelled_batch_cancels_its_queued_lines_and_says_so_in_its_error_file() {
    let app = TestApp::builder().toml(FAST).spawn().await;
    let id = start(&app, 4, "r").await;
    reaches(&app, &id, "in_progress").await;
    eventually("the lines queued", || async {
        (app.queued_jobs().await == 4).then_some(())
    })
    .await;

    let cancelling = app
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    cancelling.expect(200);
    assert!(["cancelling", "cancelled"].contains(&cancelling.body["status"].as_str().unwrap()));
    let cancelled = reaches(&app, &id, "cancelled").await;
    assert!(cancelled["cancelled_at"].is_i64());
    assert_eq!(
        batch_events(&app).await,
        [("batch.cancelled".to_owned(), id.clone())]
    );
    assert_eq!(cancelled["output_file_id"], Value::Null);
    let errors = read_lines(&app, &cancelled["error_file_id"]).await;
    assert_eq!(errors.len(), 4);
    for out in errors.values() {
        assert_eq!(out["response"], Value::Null);
        assert_eq!(out["error"]["code"], "batch_cancelled");
    }
    // Its jobs were canceled: a worker started now runs none of them.
    app.start_worker();
    let again = app
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    again.expect(200);
    assert_eq!(again.body["status"], "cancelled");
}

#[tokio::test]
async fn a_batch_is_its_tenants_and_lists_newest_first() {
    let app = TestApp::builder().toml(FAST).spawn().await;
    let input = upload_batch_input(&app, &file(&[line("a", "x")])).await;
    let first = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = app.get("/v1/batches?limit=1").await;
    list.expect(200);
    assert_eq!(list.body["data"][0]["id"], second.as_str());
    assert_eq!(list.body["has_more"], true);
    let rest = app.get(&format!("/v1/batches?after={second}")).await.body;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["id"], first.as_str());

    let other = app.tenant("other").await;
    other
        .get(&format!("/v1/batches/{first}"))
        .await
        .expect_openai_error(404, "invalid_request_error", None);
    assert_eq!(other.get("/v1/batches").await.body["data"], json!([]));
    // Nor may it run another tenant's file.
    let reply = other
        .post(
            "/v1/batches",
            &json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    reply.expect_openai_error(404, "invalid_request_error", None);
}

#[tokio::test]
async fn a_batch_request_that_is_not_one_is_refused_in_openais_shape() {
    let app = TestApp::builder().toml(FAST).spawn().await;
    let input = upload_batch_input(&app, &file(&[line("a", "x")])).await;
    for (body, says) in [
        (
            json!({"input_file_id": input, "endpoint": "/v1/moderations", "completion_window": "24h"}),
            "endpoint",
        ),
        (
            json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "1h"}),
            "completion_window",
        ),
        (
            json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "input_file_id",
        ),
        (
            json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h",
                "metadata": {"n": 1}}),
            "metadata",
        ),
    ] {
        let reply = app.post("/v1/batches", &body).await;
        reply.expect_openai_error(400, "invalid_request_error", None);
        assert!(reply.message().contains(says), "{}", reply.message());
    }
    app.get("/v1/batches?limit=0")
        .await
        .expect_openai_error(400, "invalid_request_error", None);
}

#[tokio::test]
async fn lines_the_broker_did_not_confirm_get_new_jobs_and_each_runs_once() {
    let app = TestApp::builder().toml(FAST).worker().spawn().await;
    app.queue.set(QueueFault::NoConfirm);
    let id = start(&app, 3, "r").await;
    let refused = eventually("the publishes refused", || async {
        let refused = app.queue.unconfirmed();
        (refused.len() >= 3).then_some(refused)
    })
    .await;
    // The broker is back: the chunk is made again, with new jobs.
    app.queue.set(QueueFault::None);
    let done = reaches(&app, &id, "completed").await;
    assert_eq!(done["request_counts"]["completed"], 3);
    let output = read_lines(&app, &done["output_file_id"]).await;
    for out in output.values() {
        let job = out["response"]["request_id"].as_str().unwrap();
        assert!(
            !refused.iter().any(|r| r == job),
            "{job} was refused, yet answered"
        );
    }
    assert_eq!(app.mock.stats().total.prompts, 3, "each line ran once");
}

#[tokio::test]
async fn a_batch_out_of_time_expires_with_what_finished_and_the_rest_marked_expired() {
    // A window of one second, and no worker: nothing runs in time.
    let app = TestApp::builder()
        .toml(&format!("{FAST}window_s = 1\n"))
        .spawn()
        .await;
    let id = start(&app, 3, "late").await;
    let expired = reaches(&app, &id, "expired").await;
    assert!(expired["expired_at"].is_i64());
    assert_eq!(expired["output_file_id"], Value::Null);
    let errors = read_lines(&app, &expired["error_file_id"]).await;
    assert_eq!(errors.len(), 3);
    for out in errors.values() {
        assert_eq!(out["error"]["code"], "batch_expired");
    }
    assert_eq!(batch_events(&app).await, [("batch.expired".to_owned(), id)]);
    // Its jobs were stopped: a worker started now calls the provider for none.
    app.start_worker();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(app.mock.stats().total.prompts, 0);
}

#[tokio::test]
async fn a_batch_over_the_tenants_batch_queue_tokens_fails_with_a_clear_error() {
    use sluice_store::tenants::TenantStore;
    // No worker: the first batch stays in progress, its tokens queued.
    let app = TestApp::builder().toml(FAST).spawn().await;
    let lines: Vec<String> = (0..3)
        .map(|i| line(&format!("t{i}"), &format!("tokens {i}")))
        .collect();
    let tokens: u64 = lines
        .iter()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            sluice_core::batching::request_tokens(
                sluice_core::Endpoint::ChatCompletions,
                &line["body"],
            )
        })
        .sum();
    app.tenants
        .set_batch_queue_tokens(&app.tenant_name, Some(tokens))
        .await
        .unwrap();
    let input = upload_batch_input(&app, &file(&lines)).await;
    let first = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    reaches(&app, &first, "in_progress").await;
    let second = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = reaches(&app, &second, "failed").await;
    let error = &failed["errors"]["data"][0];
    assert_eq!(error["code"], "token_limit_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("batch_queue_tokens"),
        "{error}"
    );
    // Once the first is cancelled, its tokens no longer count.
    app.post(&format!("/v1/batches/{first}/cancel"), &json!({}))
        .await
        .expect(200);
    reaches(&app, &first, "cancelled").await;
    let third = create(&app, &input).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    reaches(&app, &third, "in_progress").await;
}
