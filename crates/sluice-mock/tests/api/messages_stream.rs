//! `"stream": true` on `/v1/messages`: Anthropic's named events, whose text
//! deltas and usage add up to the non-streamed answer to the same body,
//! paced as the OpenAI routes' streams are, and billed as the plain call.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_mock::{count_tokens, MockServer};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::helpers::{slow_options, TestMock};

/// One event: when it arrived, its name, its data.
type Event = (Duration, String, Value);

/// POSTs `body` (streamed) to `/v1/messages` and reads its events as they
/// arrive.
async fn post_stream(server: &MockServer, body: &Value) -> (StatusCode, Vec<Event>) {
    let start = Instant::now();
    let mut body = body.clone();
    body["stream"] = json!(true);
    let request = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{status}"
    );
    let mut frames = response.into_body().into_data_stream();
    let (mut pending, mut events) = (String::new(), Vec::new());
    while let Some(frame) = frames.next().await {
        let at = start.elapsed();
        pending.push_str(std::str::from_utf8(&frame.unwrap()).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let (name, data) = event.trim_end().split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            events.push((at, name, data));
        }
    }
    assert!(pending.is_empty(), "an unfinished event: {pending:?}");
    (status, events)
}

fn body(text: &str) -> Value {
    json!({"model": "claude-mock", "max_tokens": 10,
           "system": [{"type": "text", "text": "A shared system prompt.", "cache_control": {"type": "ephemeral"}}],
           "messages": [{"role": "user", "content": text}]})
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|(_, name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn the_events_add_up_to_the_unstreamed_answer() {
    let plain = TestMock::new();
    let answer = plain.messages(&body("stream me")).await.body;
    let streaming = TestMock::new();
    let (status, events) = post_stream(&streaming.server, &body("stream me")).await;
    assert_eq!(status, 200);

    let names = names(&events);
    assert_eq!(
        names[..3],
        ["message_start", "content_block_start", "ping"],
        "{names:?}"
    );
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let start = &events[0].2["message"];
    assert_eq!(start["id"], answer["id"]);
    assert_eq!(start["model"], answer["model"]);
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    for field in [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        assert_eq!(start["usage"][field], answer["usage"][field], "{field}");
    }
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(_, name, _)| name == "content_block_delta")
        .map(|(_, _, data)| &data["delta"])
        .collect();
    assert_eq!(deltas.len(), 10, "a token a delta");
    assert!(deltas.iter().all(|d| d["type"] == "text_delta"));
    let text: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert_eq!(text, answer["content"][0]["text"].as_str().unwrap());
    let delta = &events[events.len() - 2].2;
    assert_eq!(delta["delta"]["stop_reason"], answer["stop_reason"]);
    assert_eq!(
        delta["usage"]["output_tokens"],
        answer["usage"]["output_tokens"]
    );

    assert_eq!(streaming.server.bill(), plain.server.bill());
    assert_eq!(streaming.server.stats(), plain.server.stats());
}

#[tokio::test(start_paused = true)]
async fn the_first_token_comes_after_prefill_and_the_rest_over_decode() {
    let options = slow_options();
    let mock = TestMock::with(options.clone());
    let body = body("eight tokens, or thereabouts....");
    let prompt =
        count_tokens("A shared system prompt.") + count_tokens("eight tokens, or thereabouts....");
    let (_, events) = post_stream(&mock.server, &body).await;
    let first = events
        .iter()
        .find(|(_, name, _)| name == "content_block_delta")
        .unwrap()
        .0;
    assert_eq!(first, Duration::from_millis(100 + prompt));
    let ended = events.last().unwrap().0;
    assert_eq!(ended, options.latency(prompt, 10));
    let times: std::collections::BTreeSet<Duration> = events.iter().map(|(at, ..)| *at).collect();
    assert!(times.len() >= 10, "{times:?}");

    let start = Instant::now();
    mock.messages(&body).await;
    assert_eq!(start.elapsed(), ended);
}
