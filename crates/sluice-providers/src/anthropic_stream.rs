//! Anthropic's streamed Messages answer, read as OpenAI chat chunks.
//!
//! Anthropic streams named events: `message_start` (the message, its usage
//! with the prompt's `input_tokens` and cache reads and writes),
//! `content_block_start`, `content_block_delta` (`text_delta`),
//! `content_block_stop`, `message_delta` (`stop_reason`, and the usage so
//! far: `output_tokens`, counts that are cumulative), `message_stop`, with
//! `ping`s between and `error` when the provider gives up midway. Each
//! becomes what an OpenAI stream would have sent at that point: the role
//! on the message's start, a `content` delta per text delta, the
//! `finish_reason` on the message's delta, and the usage chunk on its stop.
//! The answer is the Messages body the events add up to, which the adapter
//! reads as it reads an unstreamed one (`anthropic::from_messages`), so the
//! usage chunk the caller sees and the job's usage are one reading.
//! Blocks other than text (the adapter sends no tools) are skipped, as the
//! unstreamed reading skips them; unknown events are skipped, as
//! Anthropic's versioning policy asks.

use serde_json::{json, Value};

use crate::anthropic::{finish_reason, from_messages};
use crate::decode::StreamDecoder;

/// Reads one streamed Messages answer.
#[derive(Debug, Default)]
pub struct MessageEvents {
    /// The message from `message_start`, with its usage brought up to
    /// date by each `message_delta`.
    message: Option<Value>,
    /// The text blocks' text so far.
    text: String,
    /// When the message started (Unix seconds), each chunk's `created`.
    created: u64,
}

impl MessageEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// The message the events so far add up to, in a Messages body's shape.
    fn assembled(&self) -> Result<Value, String> {
        let mut message = self
            .message
            .clone()
            .ok_or("no message_start before the message's content")?;
        message["content"] = json!([{"type": "text", "text": self.text}]);
        Ok(message)
    }

    /// A chunk of the message with `choices` (and `usage`, if given).
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Result<String, String> {
        let message = self
            .message
            .as_ref()
            .ok_or("no message_start before the message's content")?;
        let mut chunk = json!({
            "id": message.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": message.get("model").cloned().unwrap_or(Value::Null),
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        Ok(chunk.to_string())
    }

    /// A chunk of choice 0 with `delta` and `finish_reason`.
    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> Result<String, String> {
        self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
            None,
        )
    }
}

impl StreamDecoder for MessageEvents {
    fn event(&mut self, _name: &str, data: &str, chunks: &mut Vec<String>) -> Result<bool, String> {
        let event: Value =
            serde_json::from_str(data).map_err(|e| format!("unreadable stream event: {e}"))?;
        // Each event's data names its own type, whatever the `event:` line.
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                let message = event
                    .get("message")
                    .cloned()
                    .ok_or("message_start without message")?;
                self.message = Some(message);
                self.created = unix_now();
                chunks.push(self.delta(json!({"role": "assistant", "content": ""}), None)?);
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                self.text_of(block, chunks)?;
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                if delta.get("type").and_then(Value::as_str) == Some("text_delta") {
                    self.text_of(delta, chunks)?;
                }
            }
            "message_delta" => {
                let message = self
                    .message
                    .as_mut()
                    .ok_or("message_delta before message_start")?;
                let stop = event.pointer("/delta/stop_reason").cloned();
                if let Some(stop) = stop.clone().filter(|s| !s.is_null()) {
                    message["stop_reason"] = stop;
                }
                // Its counts are cumulative: each replaces the start's.
                for (name, count) in event
                    .get("usage")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if !count.is_null() {
                        message["usage"][name] = count.clone();
                    }
                }
                if let Some(stop) = stop.as_ref().and_then(Value::as_str) {
                    chunks.push(self.delta(json!({}), Some(finish_reason(Some(stop))))?);
                }
            }
            "message_stop" => {
                let answer = from_messages(&self.assembled()?).map_err(|e| e.to_string())?;
                chunks.push(self.chunk(json!([]), Some(answer.body["usage"].clone()))?);
                return Ok(true);
            }
            "error" => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Err(format!("the provider ended the stream: {message}"));
            }
            // ping, content_block_stop, and events this version does not know.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<Value, String> {
        self.assembled()
    }
}

impl MessageEvents {
    /// Adds the text of `part` (a text block's start, a text delta), and
    /// its chunk, if it has any.
    fn text_of(&mut self, part: &Value, chunks: &mut Vec<String>) -> Result<(), String> {
        let kind = part.get("type").and_then(Value::as_str);
        let Some(text) = part
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| matches!(kind, Some("text" | "text_delta")) && !t.is_empty())
        else {
            return Ok(());
        };
        self.text.push_str(text);
        chunks.push(self.delta(json!({"content": text}), None)?);
        Ok(())
    }
}

/// Seconds since the Unix epoch, for each chunk's `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::stream::Assembler;
    use sluice_core::Endpoint;

    /// The events of a short answer, as Anthropic streams them.
    fn events() -> Vec<Value> {
        vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 100,
                          "cache_creation_input_tokens": 5}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "mock:"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "abc tok"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                   "usage": {"output_tokens": 7}}),
            json!({"type": "message_stop"}),
        ]
    }

    /// Feeds `events`: the chunks, and whether the last one completed it.
    fn feed(decoder: &mut MessageEvents, events: &[Value]) -> (Vec<Value>, bool) {
        let mut chunks = Vec::new();
        let mut done = false;
        for event in events {
            let name = event["type"].as_str().unwrap();
            done = decoder
                .event(name, &event.to_string(), &mut chunks)
                .unwrap();
        }
        (
            chunks
                .iter()
                .map(|c| serde_json::from_str(c).unwrap())
                .collect(),
            done,
        )
    }

    #[test]
    fn the_chunks_and_the_answer_say_what_an_unstreamed_answer_says() {
        let mut decoder = MessageEvents::new();
        let (chunks, done) = feed(&mut decoder, &events());
        assert!(done);
        // role, two deltas, finish, usage.
        assert_eq!(chunks.len(), 5, "{chunks:?}");
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "msg_1"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
        let streamed = from_messages(&decoder.finish().unwrap()).unwrap();
        let unstreamed = from_messages(
            &json!({"id": "msg_1", "type": "message", "model": "claude-x",
            "stop_reason": "max_tokens", "content": [{"type": "text", "text": "mock:abc tok"}],
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 5}}),
        )
        .unwrap();
        assert_eq!(streamed, unstreamed);
        assert_eq!(streamed.usage.completion_tokens, 7);
        assert_eq!(streamed.usage.prompt_tokens, 115);
        // The caller's chunks assemble to the job's answer, usage included.
        let mut assembler = Assembler::new(Endpoint::ChatCompletions);
        chunks.iter().for_each(|c| assembler.push(c));
        let assembled = assembler.finish();
        assert_eq!(assembled["choices"], streamed.body["choices"]);
        assert_eq!(assembled["usage"], streamed.body["usage"]);
    }

    #[test]
    fn a_stream_cut_short_or_ended_by_an_error_is_not_an_answer() {
        let mut decoder = MessageEvents::new();
        let (_, done) = feed(&mut decoder, &events()[..5]);
        assert!(!done);
        let mut chunks = Vec::new();
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let refused = decoder.event("error", &error.to_string(), &mut chunks);
        assert!(refused.unwrap_err().contains("Overloaded"));
        let mut fresh = MessageEvents::new();
        let delta = events()[3].to_string();
        assert!(fresh
            .event("content_block_delta", &delta, &mut chunks)
            .is_err());
        assert!(MessageEvents::new().finish().is_err());
    }
}
