//! The pure parts of the Batch API clients, on fixtures in the providers'
//! real shapes: lines going out, batch objects, result files read out of
//! order, state mapping.

use super::lines::{Collector, LineSplitter, MAX_LINE_BYTES};
use super::*;
use serde_json::json;
use sluice_core::config::Config;
use sluice_core::{Tier, Usage};

/// A config with one provider of `kind` at `base_url` (a key from
/// `SLUICE_BATCH_TEST_KEY`) and a price for `gpt-4o-mini` and `claude`.
pub(super) fn config(kind: &str, base_url: &str) -> Config {
    // Each test runs in a process of its own (nextest): setting it is safe.
    std::env::set_var("SLUICE_BATCH_TEST_KEY", "sk-test");
    let text = format!(
        r#"
        [[providers]]
        name = "p"
        kind = "{kind}"
        base_url = "{base_url}"
        api_key_env = "SLUICE_BATCH_TEST_KEY"
        headers = {{ "x-org" = "org-1" }}

        [[prices]]
        provider = "p"
        model = "gpt-4o-mini"
        input = 1000000
        cached_input = 100000
        output = 4000000

        [[prices]]
        provider = "p"
        model = "claude"
        input = 1000000
        cached_input = 100000
        output = 4000000
        "#
    );
    Config::parse(&text, "test").unwrap()
}

pub(super) fn api(kind: &str, base_url: &str) -> Arc<dyn BatchApi> {
    let config = config(kind, base_url);
    batch_api(&config, &config.providers[0], Arc::new(Metrics::new())).unwrap()
}

/// Reads `file` (in chunks of 7 bytes) as a batch sent with `sent`.
fn read(file: &str, sent: &[&str], parse: impl Fn(String, Value) -> LineResult) -> BatchResults {
    let sent: Vec<String> = sent.iter().map(|s| s.to_string()).collect();
    let mut collector = Collector::new(&sent);
    collector.begin("file");
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut each = |raw: &[u8]| collector.line(raw, &parse);
    for chunk in file.as_bytes().chunks(7) {
        splitter.push(chunk, &mut each).unwrap();
    }
    splitter.finish(&mut each);
    collector.finish()
}

fn by_id<'a>(results: &'a BatchResults, id: &str) -> &'a LineResult {
    results
        .lines
        .iter()
        .find(|line| line.custom_id() == id)
        .unwrap_or_else(|| panic!("no result for {id}"))
}

fn chat(text: &str) -> Value {
    json!({"model": "mock-small", "max_tokens": 20,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})
}

#[test]
fn states_read_and_write_as_openai_names_them() {
    for state in RemoteState::ALL {
        assert_eq!(state.as_str().parse::<RemoteState>(), Ok(state));
        assert_eq!(json!(state), json!(state.as_str()));
    }
    let terminal: Vec<_> = RemoteState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(
        terminal,
        [
            RemoteState::Completed,
            RemoteState::Failed,
            RemoteState::Expired,
            RemoteState::Cancelled
        ]
    );
    assert!("done".parse::<RemoteState>().is_err());
}

#[test]
fn a_batch_is_refused_before_sending_when_empty_too_long_or_repeating_an_id() {
    let refuse = |why: String| ProviderError::Transient {
        provider: "p".into(),
        message: why,
    };
    let limits = BatchLimits { lines: 2, bytes: 1 };
    let line = |id: &str| BatchLine {
        custom_id: id.into(),
        body: json!({}),
    };
    let why = |lines: &[BatchLine]| match check_lines(lines, limits, refuse) {
        Err(ProviderError::Transient { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    assert!(why(&[]).contains("at least one line"));
    assert!(why(&[line("a"), line("b"), line("c")]).contains("over the provider's 2"));
    assert!(why(&[line("a"), line("a")]).contains("\"a\" is on two lines"));
    assert!(check_lines(&[line("a"), line("b")], limits, refuse).is_ok());
}

#[test]
fn openai_lines_are_the_job_body_with_the_upstream_model_posted_to_the_endpoint() {
    let api = api("openai", "http://127.0.0.1:1/v1");
    let endpoint = Endpoint::ChatCompletions;
    let line = api
        .line(endpoint, "gpt-4o-mini", "job-1", &chat("hi"))
        .unwrap();
    assert_eq!(line.custom_id, "job-1");
    assert_eq!(line.body["model"], "gpt-4o-mini");
    assert_eq!(line.body["messages"], chat("hi")["messages"]);
    assert!(api.line(endpoint, "m", "job-2", &json!([1])).is_err());
    assert!(api.line(endpoint, "m", "", &chat("hi")).is_err());

    let embed = api
        .line(
            Endpoint::Embeddings,
            "text-embedding-3-small",
            "job-3",
            &json!({"input": ["a", "b"]}),
        )
        .unwrap();
    let file = openai::input_file(Endpoint::Embeddings, &[embed]).unwrap();
    let text = String::from_utf8(file).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"custom_id": "job-3", "method": "POST", "url": "/v1/embeddings",
            "body": {"input": ["a", "b"], "model": "text-embedding-3-small"}})
        ]
    );
}

#[test]
fn an_openai_batch_object_becomes_a_remote_batch() {
    let completed = json!({
        "id": "batch_abc123", "object": "batch", "endpoint": "/v1/chat/completions",
        "errors": null, "input_file_id": "file-abc123", "completion_window": "24h",
        "status": "completed", "output_file_id": "file-cvaTdG", "error_file_id": "file-HOWS94",
        "created_at": 1711471533, "in_progress_at": 1711471538, "expires_at": 1711557933,
        "finalizing_at": 1711493133, "completed_at": 1711493163, "failed_at": null,
        "expired_at": null, "cancelling_at": null, "cancelled_at": null,
        "request_counts": {"total": 100, "completed": 95, "failed": 5},
        "metadata": {"sluice_batch": "b-1"}});
    let batch = openai::remote_batch(&completed).unwrap();
    assert_eq!(
        batch,
        RemoteBatch {
            id: "batch_abc123".into(),
            state: RemoteState::Completed,
            counts: Counts {
                total: 100,
                completed: 95,
                failed: 5
            },
            input_file_id: Some("file-abc123".into()),
            output_file_id: Some("file-cvaTdG".into()),
            error_file_id: Some("file-HOWS94".into()),
            errors: Vec::new(),
        }
    );
    let failed = json!({"id": "batch_2", "object": "batch", "status": "failed",
        "output_file_id": null, "error_file_id": null,
        "errors": {"object": "list", "data": [
            {"code": "invalid_json_line", "line": 2, "message": "This line is not parseable as valid JSON.", "param": null},
            {"code": "too_many_tasks", "line": null, "message": "Too many tasks.", "param": null}]}});
    let batch = openai::remote_batch(&failed).unwrap();
    assert_eq!(batch.state, RemoteState::Failed);
    assert_eq!(batch.counts, Counts::default());
    assert_eq!((batch.output_file_id, batch.error_file_id), (None, None));
    assert_eq!(
        batch.errors,
        [
            "line 2: invalid_json_line: This line is not parseable as valid JSON.",
            "too_many_tasks: Too many tasks."
        ]
    );
    let strange = json!({"id": "batch_3", "status": "paused"});
    assert!(openai::remote_batch(&strange)
        .unwrap_err()
        .contains("paused"));
    assert!(openai::remote_batch(&json!({"status": "completed"})).is_err());
}

/// An OpenAI output and error file, read as one stream, out of order.
const OPENAI_RESULTS: &str = r#"{"id": "batch_req_3", "custom_id": "job-3", "response": {"status_code": 400, "request_id": "r3", "body": {"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}}, "error": null}
{"id": "batch_req_2", "custom_id": "job-2", "response": {"status_code": 200, "request_id": "r2", "body": {"id": "chatcmpl-2", "object": "chat.completion", "created": 1711652795, "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "message": {"role": "assistant", "content": "two"}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24, "prompt_tokens_details": {"cached_tokens": 0}}}}, "error": null}
{"id": "batch_req_9", "custom_id": "job-9", "response": {"status_code": 200, "request_id": "r9", "body": {}}, "error": null}
{"id": "batch_req_4", "custom_id": "job-4", "response": {"status_code": 500, "request_id": "r4", "body": {"error": {"message": "The server had an error", "type": "server_error"}}}, "error": null}

{"id": "batch_req_5", "custom_id": "job-5", "response": {"status_code": 429, "request_id": "r5", "body": {"error": {"message": "Rate limit reached", "type": "requests"}}}, "error": null}
{"id": "batch_req_6", "custom_id": "job-6", "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
{"id": "batch_req_7", "custom_id": "job-7", "response": null, "error": {"code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."}}
{"id": "batch_req_8", "custom_id": "job-8", "response": null, "error": {"code": "server_error", "message": "Something went wrong."}}
{"id": "batch_req_1", "custom_id": "job-1", "response": {"status_code": 200, "request_id": "r1", "body": {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}}, "error": null}
{"id": "batch_req_10", "custom_id": "job-10", "response": {"status_code": 200, "request_id": "r10", "body": {"object": "chat.completion", "choices": []}}, "error": null}
{"id": "batch_req_2b", "custom_id": "job-2", "response": {"status_code": 200, "request_id": "r2b", "body": {}}, "error": null}"#;

#[test]
fn openai_result_lines_are_matched_by_custom_id_and_carry_their_retry_decision() {
    let sent = [
        "job-1", "job-2", "job-3", "job-4", "job-5", "job-6", "job-7", "job-8", "job-10", "job-11",
    ];
    // The batch price of gpt-4o-mini: half the table's standard figures.
    let price = |u: &Usage| {
        Some((u.prompt_tokens * 500_000 + u.completion_tokens * 2_000_000).div_ceil(1_000_000))
    };
    let results = read(OPENAI_RESULTS, &sent, |id, line| {
        openai::line_result("p", id, line, price)
    });
    assert_eq!(results.lines.len(), 9, "job-11 has no line: {results:?}");

    let LineResult::Answered { answer, .. } = by_id(&results, "job-2") else {
        panic!("job-2 answered")
    };
    assert_eq!(answer.body["choices"][0]["message"]["content"], "two");
    assert_eq!(answer.usage, Usage::new(22, 2, 0));
    assert_eq!(answer.cost_micros, Some(15));
    assert_eq!(answer.tier, Tier::ProviderBatch);
    let LineResult::Answered { answer, .. } = by_id(&results, "job-1") else {
        panic!("job-1 answered")
    };
    assert_eq!(answer.body["choices"][0]["message"]["content"], "one");

    let refused = by_id(&results, "job-3");
    assert!(!refused.retryable(), "a 400 fails its job");
    let LineResult::Failed { status, error, .. } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*status, Some(400));
    let job_error = error.job_error();
    assert!(job_error.message.contains("maximum context length"));
    let rejection = job_error.rejection.unwrap();
    assert_eq!(rejection.status, 400);
    assert_eq!(rejection.error["code"], "context_length_exceeded");

    for retryable in ["job-4", "job-5", "job-8"] {
        let line = by_id(&results, retryable);
        assert!(matches!(line, LineResult::Failed { .. }), "{line:?}");
        assert!(line.retryable(), "{line:?}");
    }
    assert!(matches!(
        by_id(&results, "job-5"),
        LineResult::Failed { status: Some(429), error, .. } if error.retry_after().is_some()
    ));
    assert_eq!(
        by_id(&results, "job-6"),
        &LineResult::NotRun {
            custom_id: "job-6".into(),
            reason: NotRunReason::Expired
        }
    );
    assert_eq!(
        by_id(&results, "job-7"),
        &LineResult::NotRun {
            custom_id: "job-7".into(),
            reason: NotRunReason::Cancelled
        }
    );
    // A 200 without usage is no answer, and will not become one.
    let no_usage = by_id(&results, "job-10");
    assert!(matches!(
        no_usage,
        LineResult::Failed {
            status: Some(200),
            ..
        }
    ));
    assert!(!no_usage.retryable());

    assert_eq!(results.unmatched.len(), 2, "{:?}", results.unmatched);
    assert!(results.unmatched[0].contains("\"job-9\" was not sent"));
    assert!(results.unmatched[1].contains("second result for custom_id \"job-2\""));
}

#[test]
fn anthropic_lines_are_messages_params_for_chat_jobs_with_ids_it_takes() {
    let api = api("anthropic", "http://127.0.0.1:1/v1");
    let chat_endpoint = Endpoint::ChatCompletions;
    let line = api
        .line(chat_endpoint, "claude", "job_1-a", &chat("hi"))
        .unwrap();
    assert_eq!(
        line.body,
        crate::anthropic::to_messages(&chat("hi"), "claude").unwrap()
    );
    assert_eq!(line.body["model"], "claude");
    let refused = |endpoint, id: &str, body: &Value| {
        let e = api.line(endpoint, "claude", id, body).unwrap_err();
        assert!(!e.is_retryable());
        e.to_string()
    };
    assert!(
        refused(Endpoint::Embeddings, "job-1", &json!({"input": "x"}))
            .contains("chat completions only")
    );
    assert!(refused(chat_endpoint, "job/1", &chat("hi")).contains("custom_id"));
    assert!(refused(chat_endpoint, &"x".repeat(65), &chat("hi")).contains("custom_id"));
    let mut tools = chat("hi");
    tools["tools"] = json!([]);
    assert!(refused(chat_endpoint, "job-1", &tools).contains("tools"));

    let body = anthropic::create_body(&[line]).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["requests"][0]["custom_id"], "job_1-a");
    assert_eq!(body["requests"][0]["params"]["max_tokens"], 20);
}

#[test]
fn anthropic_processing_status_and_counts_map_to_remote_state() {
    let batch = |status: &str, extra: Value| {
        let mut b = json!({"id": "msgbatch_01", "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": 0, "succeeded": 50, "errored": 30, "canceled": 10, "expired": 0},
            "ended_at": null, "created_at": "2024-08-20T18:37:24.100435Z",
            "expires_at": "2024-08-21T18:37:24.100435Z", "archived_at": null,
            "cancel_initiated_at": null, "results_url": null});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        anthropic::remote_batch(&b)
    };
    let url = "https://api.anthropic.com/v1/messages/batches/msgbatch_01/results";
    let running = batch("in_progress", json!({})).unwrap();
    assert_eq!(running.state, RemoteState::InProgress);
    assert_eq!(running.output_file_id, None);
    assert_eq!(
        running.counts,
        Counts {
            total: 90,
            completed: 50,
            failed: 30
        }
    );
    let ended = batch("ended", json!({"results_url": url})).unwrap();
    assert_eq!(ended.state, RemoteState::Completed);
    assert_eq!(ended.output_file_id.as_deref(), Some(url));
    let expired = json!({"request_counts": {"succeeded": 1, "expired": 2}, "results_url": url});
    assert_eq!(batch("ended", expired).unwrap().state, RemoteState::Expired);
    let asked = json!({"cancel_initiated_at": "2024-08-20T19:00:00Z"});
    assert_eq!(
        batch("canceling", asked.clone()).unwrap().state,
        RemoteState::Cancelling
    );
    assert_eq!(batch("ended", asked).unwrap().state, RemoteState::Cancelled);
    assert!(batch("paused", json!({})).unwrap_err().contains("paused"));
}

/// An Anthropic results file, out of order.
const ANTHROPIC_RESULTS: &str = r#"{"custom_id":"job-2","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 999999 > 8192, which is the maximum allowed"}}}}
{"custom_id":"job-1","result":{"type":"succeeded","message":{"id":"msg_014VwiXbi91y3JMjcpyGBHX5","type":"message","role":"assistant","model":"claude-3-5-sonnet-20240620","content":[{"type":"text","text":"Hello again!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":36,"cache_read_input_tokens":100,"cache_creation_input_tokens":0}}}}
{"custom_id":"job-3","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}}}
{"custom_id":"job-4","result":{"type":"canceled"}}
{"custom_id":"job-5","result":{"type":"expired"}}
{"custom_id":"job-6","result":{"type":"succeeded","message":{"type":"message","content":[]}}}
{"custom_id":"stranger","result":{"type":"canceled"}}"#;

#[test]
fn anthropic_results_become_openai_answers_or_errors_with_their_retry_decision() {
    let sent = ["job-1", "job-2", "job-3", "job-4", "job-5", "job-6"];
    let results = read(ANTHROPIC_RESULTS, &sent, |id, line| {
        anthropic::line_result("p", id, line, |_| Some(7))
    });
    assert_eq!(results.lines.len(), 6);
    let LineResult::Answered { answer, .. } = by_id(&results, "job-1") else {
        panic!("job-1 answered")
    };
    assert_eq!(answer.body["object"], "chat.completion");
    assert_eq!(
        answer.body["choices"][0]["message"]["content"],
        "Hello again!"
    );
    assert_eq!(answer.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer.usage, Usage::new(111, 36, 100));
    assert_eq!(
        (answer.cost_micros, answer.tier),
        (Some(7), Tier::ProviderBatch)
    );

    let refused = by_id(&results, "job-2");
    assert!(!refused.retryable());
    let LineResult::Failed { status, error, .. } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*status, Some(400));
    let rejection = error.job_error().rejection.unwrap();
    assert_eq!(rejection.error["type"], "invalid_request_error");
    assert!(error.to_string().contains("max_tokens: 999999"));

    let overloaded = by_id(&results, "job-3");
    assert!(matches!(
        overloaded,
        LineResult::Failed {
            status: Some(529),
            ..
        }
    ));
    assert!(overloaded.retryable());
    assert!(matches!(
        by_id(&results, "job-4"),
        LineResult::NotRun {
            reason: NotRunReason::Cancelled,
            ..
        }
    ));
    assert!(matches!(
        by_id(&results, "job-5"),
        LineResult::NotRun {
            reason: NotRunReason::Expired,
            ..
        }
    ));
    assert!(
        !by_id(&results, "job-6").retryable(),
        "a message without usage"
    );
    assert_eq!(results.unmatched.len(), 1);
    assert!(results.unmatched[0].contains("\"stranger\""));
}
