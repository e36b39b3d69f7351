//! The clients against a tiny in-test provider (axum): the requests they
//! send (paths, headers, multipart fields, JSON) and how they read the
//! answers, result files streamed in small chunks included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_core::Endpoint;

use super::tests::api;
use super::{LineResult, NotRunReason, RemoteBatch, RemoteState};
use crate::ProviderError;

/// One request the fake provider received.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The fields of a multipart form: name, file name, content.
    fn form(&self) -> Vec<(String, Option<String>, String)> {
        let boundary = self
            .header("content-type")
            .split("boundary=")
            .nth(1)
            .unwrap()
            .to_owned();
        let text = String::from_utf8(self.body.to_vec()).unwrap();
        let quoted = |head: &str, key: &str| {
            head.split(key)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        text.split(&format!("--{boundary}"))
            .filter_map(|part| {
                let part = part.strip_prefix("\r\n")?;
                let (head, content) = part.split_once("\r\n\r\n")?;
                let content = content.strip_suffix("\r\n").unwrap_or(content);
                let name = quoted(head, "; name=\"")?;
                Some((name, quoted(head, "filename=\""), content.to_owned()))
            })
            .collect()
    }
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// `http://127.0.0.1:port`
    origin: String,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts the fake provider; its origin and record.
async fn start() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Fake {
        seen: Arc::default(),
        origin: format!("http://{}", listener.local_addr().unwrap()),
    };
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(fake.clone());
    // The server ends with the test's runtime.
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(async move { axum::serve(listener, app).await });
    tasks.close();
    fake
}

fn ok(body: Value) -> Response {
    axum::Json(body).into_response()
}

fn refused(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A JSONL file sent in chunks of 13 bytes.
fn jsonl(lines: &[Value]) -> Response {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = text
        .as_bytes()
        .chunks(13)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks)).into_response()
}

fn chat_answer(content: &str, prompt: u64) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2}})
}

fn openai_batch(id: &str, status: &str, files: Option<(&str, &str)>) -> Value {
    let (output, error) = files.unzip();
    json!({"id": id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
        "input_file_id": "file-in1", "completion_window": "24h", "status": status,
        "output_file_id": output, "error_file_id": error, "created_at": 1711471533,
        "request_counts": {"total": 3, "completed": 1, "failed": 2}, "metadata": {"sluice_batch": "b-1"}})
}

fn message_batch(fake: &Fake, status: &str) -> Value {
    let ended = status == "ended";
    let url = format!("{}/v1/messages/batches/msgbatch_1/results", fake.origin);
    json!({"id": "msgbatch_1", "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": if ended { 0 } else { 3 }, "succeeded": if ended { 1 } else { 0 },
            "errored": if ended { 1 } else { 0 }, "canceled": 0, "expired": if ended { 1 } else { 0 }},
        "created_at": "2024-08-20T18:37:24.100435Z", "expires_at": "2024-08-21T18:37:24.100435Z",
        "ended_at": null, "archived_at": null, "cancel_initiated_at": null,
        "results_url": if ended { json!(url) } else { Value::Null }})
}

async fn answer(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    fake.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    let not_found =
        json!({"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}});
    match (method.as_str(), path.as_str()) {
        ("POST", "/v1/files") => ok(
            json!({"id": "file-in1", "object": "file", "purpose": "batch",
            "filename": "batch.jsonl", "bytes": body.len()}),
        ),
        ("POST", "/v1/batches") if body.windows(7).any(|w| w == b"refuse!") => refused(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "Invalid metadata", "type": "invalid_request_error", "param": "metadata", "code": null}}),
        ),
        ("POST", "/v1/batches") => ok(openai_batch("batch_1", "validating", None)),
        ("GET", "/v1/batches") => {
            let mut mine = openai_batch("batch_1", "in_progress", None);
            mine["metadata"] = json!({"sluice_batch_id": "b-7"});
            let mut other = openai_batch("batch_0", "completed", None);
            other["metadata"] = json!({"sluice_batch_id": "b-6"});
            ok(json!({"object": "list", "data": [mine, other], "has_more": false}))
        }
        ("DELETE", "/v1/files/file-in1") => {
            ok(json!({"id": "file-in1", "object": "file", "deleted": true}))
        }
        ("GET", "/v1/batches/batch_1") => ok(openai_batch(
            "batch_1",
            "completed",
            Some(("file-out1", "file-err1")),
        )),
        ("GET", "/v1/batches/batch_busy") => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            axum::Json(
                json!({"error": {"message": "Too many requests", "type": "rate_limit_error"}}),
            ),
        )
            .into_response(),
        ("POST", "/v1/batches/batch_1/cancel") => ok(openai_batch("batch_1", "cancelling", None)),
        ("GET", "/v1/files/file-out1/content") => jsonl(&[
            json!({"id": "batch_req_1", "custom_id": "job-1", "response": {"status_code": 200,
                "request_id": "r1", "body": chat_answer("first", 20)}, "error": null}),
            json!({"id": "batch_req_9", "custom_id": "job-9", "response": {"status_code": 200,
                "request_id": "r9", "body": chat_answer("stranger", 1)}, "error": null}),
        ]),
        ("GET", "/v1/files/file-err1/content") => jsonl(&[
            json!({"id": "batch_req_3", "custom_id": "job-3", "response": null, "error": {"code": "batch_expired",
                "message": "This request could not be executed before the completion window expired."}}),
            json!({"id": "batch_req_2", "custom_id": "job-2", "response": {"status_code": 400, "request_id": "r2",
                "body": {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error", "param": "messages", "code": null}}},
                "error": null}),
        ]),
        ("GET", "/v1/files/file-broken/content") => refused(
            StatusCode::BAD_GATEWAY,
            json!({"error": {"message": "upstream", "type": "server_error"}}),
        ),
        ("POST", "/v1/messages/batches") => ok(message_batch(&fake, "in_progress")),
        ("GET", "/v1/messages/batches/msgbatch_1") => ok(message_batch(&fake, "ended")),
        ("POST", "/v1/messages/batches/msgbatch_1/cancel") => ok(message_batch(&fake, "canceling")),
        ("GET", "/v1/messages/batches/msgbatch_1/results") => jsonl(&[
            json!({"custom_id": "job-3", "result": {"type": "expired"}}),
            json!({"custom_id": "job-2", "result": {"type": "errored", "error": {"type": "error",
                "error": {"type": "invalid_request_error", "message": "max_tokens too large"}}}}),
            json!({"custom_id": "job-1", "result": {"type": "succeeded", "message": {"id": "msg_1",
                "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "first"}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 20, "output_tokens": 2}}}}),
        ]),
        _ => refused(StatusCode::NOT_FOUND, not_found),
    }
}

fn chat(text: &str) -> Value {
    json!({"model": "mock-small", "messages": [{"role": "user", "content": text}], "max_tokens": 16})
}

fn ids() -> Vec<String> {
    ["job-1", "job-2", "job-3"].map(String::from).to_vec()
}

#[tokio::test]
async fn the_openai_client_uploads_a_file_creates_a_batch_and_reads_both_result_files() {
    let fake = start().await;
    let api = api("openai", &format!("{}/v1", fake.origin));
    let chat_endpoint = Endpoint::ChatCompletions;
    let lines: Vec<_> = ids()
        .iter()
        .map(|id| {
            api.line(chat_endpoint, "gpt-4o-mini", id, &chat(id))
                .unwrap()
        })
        .collect();
    let metadata = BTreeMap::from([("sluice_batch".to_owned(), "b-1".to_owned())]);
    let batch = api.submit(chat_endpoint, &lines, &metadata).await.unwrap();
    assert_eq!(
        (batch.id.as_str(), batch.state),
        ("batch_1", RemoteState::Validating)
    );

    let seen = fake.seen();
    let (upload, create) = (&seen[0], &seen[1]);
    assert_eq!(
        (&upload.method, upload.path.as_str()),
        (&Method::POST, "/v1/files")
    );
    for request in [upload, create] {
        assert_eq!(request.header("authorization"), "Bearer sk-test");
        assert_eq!(request.header("x-org"), "org-1", "the config's headers");
    }
    assert!(upload
        .header("content-type")
        .starts_with("multipart/form-data"));
    let form = upload.form();
    assert_eq!(form.len(), 2, "{form:?}");
    assert_eq!(
        (form[0].0.as_str(), form[0].2.as_str()),
        ("purpose", "batch")
    );
    assert_eq!(form[1].0, "file");
    assert_eq!(form[1].1.as_deref(), Some("batch.jsonl"));
    let file: Vec<Value> = form[1]
        .2
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(file.len(), 3);
    assert_eq!(
        file[1],
        json!({"custom_id": "job-2", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "job-2"}], "max_tokens": 16}})
    );
    assert_eq!(
        (&create.method, create.path.as_str()),
        (&Method::POST, "/v1/batches")
    );
    assert_eq!(create.header("content-type"), "application/json");
    assert_eq!(
        create.json(),
        json!({"input_file_id": "file-in1", "endpoint": "/v1/chat/completions",
            "completion_window": "24h", "metadata": {"sluice_batch": "b-1"}})
    );

    let done = api.status("batch_1").await.unwrap();
    assert_eq!(done.state, RemoteState::Completed);
    assert_eq!(done.output_file_id.as_deref(), Some("file-out1"));
    assert_eq!(done.error_file_id.as_deref(), Some("file-err1"));
    let results = api.results(&done, "gpt-4o-mini", &ids()).await.unwrap();
    let paths: Vec<String> = fake.seen()[2..].iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/batches/batch_1",
            "/v1/files/file-out1/content",
            "/v1/files/file-err1/content"
        ]
    );
    let found: Vec<&str> = results.lines.iter().map(LineResult::custom_id).collect();
    assert_eq!(found, ["job-1", "job-3", "job-2"], "in the order read");
    let LineResult::Answered { answer, .. } = &results.lines[0] else {
        panic!("{:?}", results.lines[0])
    };
    assert_eq!(answer.body["choices"][0]["message"]["content"], "first");
    // 20 prompt and 2 completion tokens at half of 1 and 4 $/M tokens.
    assert_eq!(answer.cost_micros, Some(14));
    assert!(matches!(
        results.lines[1],
        LineResult::NotRun {
            reason: NotRunReason::Expired,
            ..
        }
    ));
    assert!(matches!(
        results.lines[2],
        LineResult::Failed {
            status: Some(400),
            ..
        }
    ));
    assert!(!results.lines[2].retryable());
    assert_eq!(results.unmatched.len(), 1);
    assert!(results.unmatched[0].starts_with("output file file-out1 line 2:"));

    let cancelling = api.cancel("batch_1").await.unwrap();
    assert_eq!(cancelling.state, RemoteState::Cancelling);
    let last = fake.seen().pop().unwrap();
    assert_eq!(
        (&last.method, last.path.as_str()),
        (&Method::POST, "/v1/batches/batch_1/cancel")
    );
}

#[tokio::test]
async fn openai_failures_carry_their_retry_decision() {
    let fake = start().await;
    let api = api("openai", &format!("{}/v1", fake.origin));
    let busy = api.status("batch_busy").await.unwrap_err();
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(7)));

    let unknown = api.status("batch_nope").await.unwrap_err();
    assert!(!unknown.is_retryable());
    let before = fake.seen().len();
    assert!(!api.status("../files").await.unwrap_err().is_retryable());
    assert_eq!(
        fake.seen().len(),
        before,
        "an id unfit for a path is not sent"
    );

    let broken = RemoteBatch {
        id: "batch_1".into(),
        state: RemoteState::Completed,
        counts: Default::default(),
        input_file_id: None,
        output_file_id: Some("file-broken".into()),
        error_file_id: None,
        errors: Vec::new(),
    };
    let error = api
        .results(&broken, "gpt-4o-mini", &ids())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Transient { .. }),
        "{error:?}"
    );

    // A refused batch leaves no file behind.
    let line = api
        .line(
            Endpoint::ChatCompletions,
            "gpt-4o-mini",
            "job-1",
            &chat("x"),
        )
        .unwrap();
    let metadata = BTreeMap::from([("note".to_owned(), "refuse!".to_owned())]);
    let refused = api
        .submit(Endpoint::ChatCompletions, &[line], &metadata)
        .await
        .unwrap_err();
    assert!(!refused.is_retryable());
    assert!(refused.to_string().contains("Invalid metadata"));
    let last = fake.seen().pop().unwrap();
    assert_eq!(
        (&last.method, last.path.as_str()),
        (&Method::DELETE, "/v1/files/file-in1")
    );
    assert!(api
        .submit(Endpoint::ChatCompletions, &[], &metadata)
        .await
        .is_err());
}

#[tokio::test]
async fn the_anthropic_client_creates_a_message_batch_and_reads_its_results_url() {
    let fake = start().await;
    let api = api("anthropic", &format!("{}/v1", fake.origin));
    let chat_endpoint = Endpoint::ChatCompletions;
    let lines: Vec<_> = ids()
        .iter()
        .map(|id| api.line(chat_endpoint, "claude", id, &chat(id)).unwrap())
        .collect();
    let batch = api
        .submit(chat_endpoint, &lines, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        (batch.id.as_str(), batch.state),
        ("msgbatch_1", RemoteState::InProgress)
    );
    assert_eq!(batch.counts.total, 3);
    let create = &fake.seen()[0];
    assert_eq!(
        (&create.method, create.path.as_str()),
        (&Method::POST, "/v1/messages/batches")
    );
    assert_eq!(create.header("x-api-key"), "sk-test");
    assert_eq!(create.header("anthropic-version"), "2023-06-01");
    assert_eq!(create.header("x-org"), "org-1");
    assert_eq!(create.header("authorization"), "", "no bearer token");
    assert_eq!(
        create.json()["requests"][1],
        json!({"custom_id": "job-2", "params": {"model": "claude", "max_tokens": 16,
            "messages": [{"role": "user", "content": "job-2"}]}})
    );

    let done = api.status("msgbatch_1").await.unwrap();
    assert_eq!(done.state, RemoteState::Expired, "one line expired");
    let results = api.results(&done, "claude", &ids()).await.unwrap();
    let last = fake.seen().pop().unwrap();
    assert_eq!(last.path, "/v1/messages/batches/msgbatch_1/results");
    assert_eq!(last.header("x-api-key"), "sk-test");
    assert!(results.unmatched.is_empty(), "{:?}", results.unmatched);
    let found: Vec<&str> = results.lines.iter().map(LineResult::custom_id).collect();
    assert_eq!(found, ["job-3", "job-2", "job-1"]);
    let LineResult::Answered { answer, .. } = &results.lines[2] else {
        panic!("{:?}", results.lines[2])
    };
    assert_eq!(answer.body["choices"][0]["message"]["content"], "first");
    assert_eq!(answer.cost_micros, Some(14));
    assert!(!results.lines[1].retryable());
    assert!(results.lines[0].retryable());

    assert_eq!(
        api.cancel("msgbatch_1").await.unwrap().state,
        RemoteState::Cancelling
    );
    let gone = api.status("msgbatch_gone").await.unwrap_err();
    assert!(!gone.is_retryable());
    assert!(gone.to_string().contains("no such batch"));
}

#[tokio::test]
async fn a_batch_whose_submission_was_lost_is_found_by_its_metadata() {
    let fake = start().await;
    let openai = api("openai", &format!("{}/v1", fake.origin));
    let found = openai
        .find("sluice_batch_id", "b-7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.state),
        ("batch_1", RemoteState::InProgress)
    );
    assert_eq!(openai.find("sluice_batch_id", "b-8").await.unwrap(), None);
    let anthropic = api("anthropic", &format!("{}/v1", fake.origin));
    assert_eq!(
        anthropic.find("sluice_batch_id", "b-7").await.unwrap(),
        None
    );
}
