//! A Messages answer streamed (`"stream": true` on `/v1/messages`) as
//! Anthropic sends it: a `200` with `content-type: text/event-stream` whose
//! body is named events, `event: NAME\ndata: {json}\n\n`:
//!
//! - `message_start`: the message with no content yet, `stop_reason` null,
//!   and its usage: the prompt's `input_tokens` and cache reads and writes,
//!   exact, and `output_tokens: 1`, as Anthropic sends it;
//! - `content_block_start` of the text block (index 0), then a `ping`;
//! - one `content_block_delta` (`text_delta`) per token of the text, so the
//!   deltas joined are exactly the non-streamed answer's text;
//! - `content_block_stop`, then `message_delta` with the `stop_reason` and
//!   the final `usage.output_tokens`, then `message_stop`.
//!
//! The steps are paced as every stream of the mock is
//! ([`stream`](super::stream)): the openings and first token after
//! prefill, one token a step over decode, the closing events at the end.

use axum::body::Bytes;
use serde_json::{json, Value};

use super::messages::MessagesResponse;
use super::stream::{Paced, Streaming};
use crate::text::{first_token, token_pieces};

/// The events of one Messages answer, step by step.
pub(super) struct MessageEvents {
    /// `message_start`'s message: the answer without content or stop.
    start: Value,
    /// The text block's text, sent a token a step.
    text: String,
    /// How much of `text` is sent.
    sent: usize,
    steps: u64,
    stop_reason: &'static str,
    output_tokens: u64,
}

impl MessageEvents {
    pub(super) fn new(answer: MessagesResponse, _streaming: Streaming) -> Self {
        let text: String = answer.content.iter().map(|b| b.text.as_str()).collect();
        let steps = (token_pieces(&text).count() as u64).max(1);
        let (stop_reason, output_tokens) = (answer.stop_reason, answer.usage.output_tokens);
        // A response is plain data; serializing it cannot fail.
        let mut start = serde_json::to_value(&answer).unwrap_or_default();
        start["content"] = json!([]);
        start["stop_reason"] = Value::Null;
        start["usage"]["output_tokens"] = json!(1);
        Self {
            start,
            text,
            sent: 0,
            steps,
            stop_reason,
            output_tokens,
        }
    }
}

impl Paced for MessageEvents {
    fn steps(&self) -> u64 {
        self.steps
    }

    /// On the first step the message's start, the text block's start and a
    /// ping; then the text's next token, if any is left.
    fn step(&mut self, step: u64) -> Bytes {
        let mut out = Vec::new();
        if step == 0 {
            event(
                &mut out,
                "message_start",
                &json!({"type": "message_start", "message": self.start}),
            );
            event(
                &mut out,
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
            );
            event(&mut out, "ping", &json!({"type": "ping"}));
        }
        let piece = first_token(self.text.get(self.sent..).unwrap_or_default());
        if !piece.is_empty() {
            event(
                &mut out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}),
            );
            self.sent += piece.len();
        }
        out.into()
    }

    fn end(&self) -> Bytes {
        let mut out = Vec::new();
        event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        );
        event(
            &mut out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens}}),
        );
        event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out.into()
    }
}

/// Appends the event `name` with `data` to `out`.
fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
