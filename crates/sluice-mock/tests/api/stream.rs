//! `stream: true` on the OpenAI routes: the chunks put back together are
//! the non-streamed answer to the same body, they arrive over the latency
//! model's time (exactly, on a paused clock), and the call is admitted,
//! counted and billed as the non-streamed one.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_mock::{
    count_tokens, Faults, LatencyOptions, MockOptions, MockServer, RateLimits, Ratio,
};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::helpers::{choice_texts, slow_options as slow, TestMock};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// A streamed response, each event with the time it arrived.
struct Streamed {
    status: StatusCode,
    headers: HeaderMap,
    /// Every `data:` event but `[DONE]`, parsed.
    chunks: Vec<(Duration, Value)>,
    /// Whether the last event was `[DONE]`.
    done: bool,
    /// When the last event arrived.
    ended: Duration,
}

impl Streamed {
    /// The chunks of choice `index`, in order.
    fn of(&self, index: u64) -> Vec<&Value> {
        self.chunks
            .iter()
            .map(|(_, chunk)| chunk)
            .filter(|chunk| chunk["choices"].as_array().unwrap().len() == 1)
            .filter(|chunk| chunk["choices"][0]["index"] == index)
            .collect()
    }

    /// The choices' `choices[0]` entries of choice `index`.
    fn entries(&self, index: u64) -> Vec<&Value> {
        self.of(index)
            .into_iter()
            .map(|chunk| &chunk["choices"][0])
            .collect()
    }
}

/// POSTs `body` to `path` of `server` and reads the event stream frame by
/// frame, noting when each event arrives.
async fn post_stream(server: &MockServer, path: &str, body: &Value) -> Streamed {
    let start = Instant::now();
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let mut frames = response.into_body().into_data_stream();
    let (mut pending, mut chunks, mut done, mut ended) =
        (String::new(), Vec::new(), false, start.elapsed());
    while let Some(frame) = frames.next().await {
        let at = start.elapsed();
        pending.push_str(std::str::from_utf8(&frame.unwrap()).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let data = event.strip_prefix("data: ").unwrap().trim_end_matches('\n');
            assert!(!done, "an event after [DONE]: {data}");
            if data == "[DONE]" {
                done = true;
            } else {
                chunks.push((at, serde_json::from_str(data).unwrap()));
            }
            ended = at;
        }
    }
    assert!(pending.is_empty(), "an unfinished event: {pending:?}");
    Streamed {
        status,
        headers,
        chunks,
        done,
        ended,
    }
}

fn with_stream(body: &Value, options: Value) -> Value {
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    if !options.is_null() {
        streamed["stream_options"] = options;
    }
    streamed
}

fn chat_body() -> Value {
    json!({
        "model": "m",
        "max_tokens": 12,
        "n": 2,
        "messages": [{"role": "user", "content": "stream me an answer"}],
    })
}

/// Every chunk repeats the answer's id, created, model and service tier.
fn assert_heads(streamed: &Streamed, answer: &Value, object: &str) {
    assert!(!streamed.chunks.is_empty());
    for (_, chunk) in &streamed.chunks {
        assert_eq!(chunk["object"], object, "{chunk}");
        for field in ["id", "created", "model", "service_tier"] {
            assert_eq!(chunk[field], answer[field], "{field} in {chunk}");
        }
    }
}

#[tokio::test]
async fn chat_deltas_concatenate_to_the_answer() {
    let mock = TestMock::new();
    let plain = mock.post_full(CHAT, &chat_body()).await;
    assert_eq!(plain.status, 200);
    let streamed = post_stream(&mock.server, CHAT, &with_stream(&chat_body(), Value::Null)).await;

    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.headers["content-type"], "text/event-stream");
    assert_eq!(
        streamed.headers["x-mock-cost-micros"],
        plain.headers["x-mock-cost-micros"]
    );
    assert!(streamed.done);
    assert_heads(&streamed, &plain.body, "chat.completion.chunk");
    assert!(streamed
        .chunks
        .iter()
        .all(|(_, c)| c.get("usage").is_none()));
    for (index, choice) in (0u64..).zip(plain.body["choices"].as_array().unwrap()) {
        let entries = streamed.entries(index);
        let (first, last) = (entries[0], entries[entries.len() - 1]);
        assert_eq!(first["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(last["delta"], json!({}));
        assert_eq!(last["finish_reason"], choice["finish_reason"]);
        assert_eq!(last["finish_reason"], "length");
        let middle = &entries[1..entries.len() - 1];
        assert!(middle.len() >= 12, "{} pieces", middle.len());
        assert!(middle
            .iter()
            .chain([&first])
            .all(|e| e["finish_reason"].is_null()));
        assert!(entries.iter().all(|e| e["logprobs"].is_null()));
        let content: String = middle
            .iter()
            .map(|e| e["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(content, choice["message"]["content"].as_str().unwrap());
    }
    // Choices are interleaved, a token of each a step.
    let indices: Vec<&Value> = streamed.chunks[..4]
        .iter()
        .map(|(_, c)| &c["choices"][0]["index"])
        .collect();
    assert_eq!(indices, [0, 0, 1, 1]);
}

#[tokio::test]
async fn include_usage_adds_the_usage_chunk_last() {
    let mock = TestMock::new();
    let plain = mock.post_full(CHAT, &chat_body()).await;
    let options = json!({"include_usage": true});
    let streamed = post_stream(&mock.server, CHAT, &with_stream(&chat_body(), options)).await;

    assert!(streamed.done);
    let (last, rest) = streamed.chunks.split_last().unwrap();
    assert_eq!(last.1["choices"], json!([]));
    assert_eq!(last.1["usage"], plain.body["usage"]);
    assert_eq!(last.1["id"], plain.body["id"]);
    assert!(rest
        .iter()
        .all(|(_, c)| c["usage"].is_null() && c.get("usage").is_some()));
}

#[tokio::test]
async fn a_forced_tool_call_streams_its_arguments() {
    let mock = TestMock::new();
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "call it"}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "tool_choice": "required",
    });
    let plain = mock.post_full(CHAT, &body).await;
    let call = &plain.body["choices"][0]["message"]["tool_calls"][0];
    let streamed = post_stream(&mock.server, CHAT, &with_stream(&body, Value::Null)).await;

    let entries = streamed.entries(0);
    let opening = &entries[0]["delta"];
    assert_eq!(opening["role"], "assistant");
    assert_eq!(opening["content"], Value::Null);
    let head = &opening["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert_eq!(head["id"], call["id"]);
    assert_eq!(head["type"], "function");
    assert_eq!(head["function"]["name"], "lookup");
    assert_eq!(head["function"]["arguments"], "");
    let arguments: String = entries[1..entries.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["delta"]["tool_calls"][0]["index"], 0);
            e["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(arguments, call["function"]["arguments"].as_str().unwrap());
    let last = entries[entries.len() - 1];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn completions_of_a_prompt_array_stream_each_choice() {
    let mock = TestMock::new();
    let body = json!({"model": "m", "prompt": ["first prompt", "second"], "n": 2, "max_tokens": 9});
    let plain = mock.post_full(COMPLETIONS, &body).await;
    let texts = choice_texts(&plain.body);
    assert_eq!(texts.len(), 4);
    let options = json!({"include_usage": true});
    let streamed = post_stream(&mock.server, COMPLETIONS, &with_stream(&body, options)).await;

    assert!(streamed.done);
    assert_heads(&streamed, &plain.body, "text_completion");
    for (index, expected) in (0u64..).zip(&texts) {
        assert_eq!(plain.body["choices"][index as usize]["index"], index);
        let entries = streamed.entries(index);
        let (last, pieces) = entries.split_last().unwrap();
        assert_eq!(last["text"], "");
        assert_eq!(last["finish_reason"], "length");
        assert!(pieces
            .iter()
            .all(|e| e["finish_reason"].is_null() && e["logprobs"].is_null()));
        let text: String = pieces.iter().map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(&text, expected, "choice {index}");
    }
    let (_, usage) = streamed.chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], plain.body["usage"]);
}

#[tokio::test(start_paused = true)]
async fn the_first_token_comes_after_prefill_and_the_rest_over_decode() {
    let options = slow();
    let mock = TestMock::with(options.clone());
    let prompt = "thirty-two bytes: eight tokens.."; // 32 bytes
    assert_eq!(count_tokens(prompt), 8);
    let body =
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": prompt}]});

    let streamed = post_stream(&mock.server, CHAT, &with_stream(&body, Value::Null)).await;
    let first = streamed.chunks[0].0;
    // fixed + prefill, then decode spread over the ten tokens.
    assert_eq!(first, Duration::from_millis(100 + 8));
    assert_eq!(streamed.ended, options.latency(8, 10));
    let times: Vec<Duration> = streamed.chunks.iter().map(|(at, _)| *at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let distinct: std::collections::BTreeSet<Duration> = times.iter().copied().collect();
    assert!(distinct.len() >= 10, "{times:?}");
    assert_eq!(times[2], Duration::from_millis(108 + 20));

    let start = Instant::now();
    mock.post(CHAT, &body).await;
    assert_eq!(start.elapsed(), streamed.ended);
}

#[tokio::test(start_paused = true)]
async fn flex_slows_a_stream_down_as_it_does_an_answer() {
    let mock = TestMock::with(slow());
    let body = json!({"model": "m", "prompt": "aaaa", "max_tokens": 10, "service_tier": "flex"});
    let streamed = post_stream(&mock.server, COMPLETIONS, &with_stream(&body, Value::Null)).await;
    assert_eq!(streamed.chunks[0].1["service_tier"], "flex");
    // Three times slower, both parts.
    assert_eq!(streamed.chunks[0].0, Duration::from_millis(3 * 101));
    assert_eq!(streamed.ended, Duration::from_millis(3 * (101 + 200)));
    let start = Instant::now();
    mock.post(COMPLETIONS, &body).await;
    assert_eq!(start.elapsed(), streamed.ended);
}

/// Over a real connection, as the worker reads it: the first chunk
/// arrives well before the last.
#[tokio::test]
async fn chunks_arrive_over_tcp_as_they_are_decoded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = MockServer::new(MockOptions {
        latency: LatencyOptions {
            per_completion_token_us: 20_000,
            ..LatencyOptions::default()
        },
        ..MockOptions::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server.clone().serve(listener, async {
        let _ = stopped.await;
    });
    let client = async {
        let start = std::time::Instant::now();
        let body = json!({"model": "m", "prompt": "tcp", "max_tokens": 16, "stream": true});
        let mut response = reqwest::Client::new()
            .post(format!("{base}{COMPLETIONS}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (mut first, mut last, mut text) = (None, start.elapsed(), String::new());
        while let Some(bytes) = response.chunk().await.unwrap() {
            last = start.elapsed();
            first.get_or_insert(last);
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        stop.send(()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        // 16 tokens at 20 ms: the whole takes 320 ms, the first chunk none.
        let first = first.unwrap();
        assert!(last >= Duration::from_millis(300), "{last:?}");
        assert!(
            first + Duration::from_millis(150) < last,
            "{first:?} vs {last:?}"
        );
    };
    let (served, ()) = tokio::join!(serving, client);
    served.unwrap();
}

#[tokio::test]
async fn a_streamed_call_is_billed_and_counted_as_the_plain_one() {
    let body = json!({"model": "m", "prompt": ["one", "two"], "max_tokens": 7, "n": 3});
    let plain = TestMock::new();
    plain.post(COMPLETIONS, &body).await;
    let streaming = TestMock::new();
    let streamed = with_stream(&body, json!({"include_usage": true}));
    let reply = post_stream(&streaming.server, COMPLETIONS, &streamed).await;
    assert_eq!(reply.status, 200);

    assert_eq!(streaming.server.bill(), plain.server.bill());
    assert_eq!(streaming.server.stats(), plain.server.stats());
    assert_eq!(streaming.server.stats().total.requests, 1);
    let received = streaming.server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, COMPLETIONS);
    assert_eq!(received[0].body, streamed);
}

#[tokio::test]
async fn admission_answers_json_errors_before_any_stream() {
    let body = with_stream(
        &json!({"model": "m", "prompt": "x", "max_tokens": 4}),
        Value::Null,
    );
    let expect_json_error = |reply: &crate::helpers::Reply, status: u16| {
        assert_eq!(reply.status, status, "{}", reply.text);
        assert!(reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert!(reply.body["error"]["message"].is_string(), "{}", reply.text);
    };

    let keyed = TestMock::with(MockOptions {
        api_key: "sk-test".parse().ok(),
        ..MockOptions::default()
    });
    expect_json_error(&keyed.post_full(COMPLETIONS, &body).await, 401);

    let mock = TestMock::new();
    let reply = mock
        .post_full(
            COMPLETIONS,
            &json!({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}}),
        )
        .await;
    expect_json_error(&reply, 400);
    assert_eq!(reply.body["error"]["param"], "stream_options");
    let reply = mock
        .post_full(CHAT, &json!({"model": "m", "stream": true}))
        .await;
    expect_json_error(&reply, 400);

    let limited = TestMock::with(MockOptions {
        rate_limits: RateLimits {
            requests_per_minute: Some(1),
            ..RateLimits::default()
        },
        ..MockOptions::default()
    });
    let first = post_stream(&limited.server, COMPLETIONS, &body).await;
    assert_eq!(first.status, 200);
    assert!(first.headers.contains_key("x-ratelimit-remaining-requests"));
    expect_json_error(&limited.post_full(COMPLETIONS, &body).await, 429);
    assert_eq!(limited.server.stats().total.requests, 1);

    let failing = TestMock::with(MockOptions {
        faults: Faults {
            error_rate: Ratio::ONE,
            ..Faults::default()
        },
        ..MockOptions::default()
    });
    let reply = failing
        .post_full(CHAT, &with_stream(&chat_body(), Value::Null))
        .await;
    assert!(reply.status.is_server_error(), "{}", reply.status);
    assert!(reply.body["error"].is_object(), "{}", reply.text);
    assert_eq!(failing.server.bill().total_cost_micros, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_holds_its_slot_until_done_and_a_stall_delays_its_first_token() {
    let mock = TestMock::with(MockOptions {
        max_concurrency: std::num::NonZeroUsize::new(1),
        ..slow()
    });
    let body = json!({"model": "m", "prompt": "aaaa", "max_tokens": 10, "stream": true});
    let (a, b) = tokio::join!(
        post_stream(&mock.server, COMPLETIONS, &body),
        post_stream(&mock.server, COMPLETIONS, &body),
    );
    let (first, second) = if a.chunks[0].0 < b.chunks[0].0 {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(first.ended, Duration::from_millis(301));
    // The second waits for the first's slot, then takes as long.
    assert_eq!(second.chunks[0].0, Duration::from_millis(301 + 101));
    assert_eq!(second.ended, Duration::from_millis(2 * 301));

    let stalling = TestMock::with(MockOptions {
        faults: Faults {
            stall_rate: Ratio::ONE,
            stall_ms: 5_000,
            ..Faults::default()
        },
        ..slow()
    });
    let streamed = post_stream(&stalling.server, COMPLETIONS, &body).await;
    assert_eq!(streamed.chunks[0].0, Duration::from_millis(5_000 + 101));
    assert_eq!(streamed.ended, Duration::from_millis(5_000 + 301));
    assert_eq!(stalling.server.stats().stalls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_line_cannot_stream() {
    let mock = TestMock::new();
    let body = json!({"model": "m", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "q"}]});
    let line = json!({"custom_id": "s", "method": "POST", "url": CHAT, "body": body});
    let file = mock.upload("in.jsonl", "batch", &format!("{line}\n")).await;
    let created = mock
        .post_full(
            "/v1/batches",
            &json!({"input_file_id": file.body["id"], "endpoint": CHAT, "completion_window": "24h"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    tokio::time::advance(Duration::from_secs(120)).await;
    let id = created.body["id"].as_str().unwrap();
    let (_, done) = mock.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(done["request_counts"]["failed"], 1, "{done}");
    let errors = mock
        .get_with(
            &format!(
                "/v1/files/{}/content",
                done["error_file_id"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    let error = crate::helpers::jsonl(&errors.text).remove(0);
    assert_eq!(error["response"]["status_code"], 400);
    assert_eq!(error["response"]["body"]["error"]["param"], "stream");
}
