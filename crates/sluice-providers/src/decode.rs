//! Reading a provider's stream: each adapter's [`StreamDecoder`] turns the
//! events its provider sends into OpenAI `chat.completion.chunk` (or
//! `text_completion`) chunks, which the worker relays to the job's chunk
//! log as they come (`ProviderHttp::post_stream`), and into the answer the
//! stream amounts to: the body the same call without `stream` returns, so
//! the adapter ends a streamed job exactly as an unstreamed one.

use serde_json::Value;
use sluice_core::stream::Assembler;
use sluice_core::Endpoint;

/// Reads one provider's stream events.
pub trait StreamDecoder: Send {
    /// Takes one event (`name`, the `event:` field, `message` when the
    /// provider names none; `data`, its data) and appends the chunks it
    /// stands for, as JSON text, to `chunks`. `Ok(true)` once the stream is
    /// complete; an error (the provider's own error event, an unreadable
    /// one) ends the call.
    fn event(&mut self, name: &str, data: &str, chunks: &mut Vec<String>) -> Result<bool, String>;

    /// The answer the complete stream amounts to, or why it is not one.
    fn finish(self) -> Result<Value, String>;
}

/// OpenAI's streams: each `data:` a chunk, relayed as sent, `[DONE]` last;
/// the answer assembled from the chunks, usage included (it is asked for,
/// `sluice_core::stream::streaming_body`).
pub struct OpenAiChunks(Assembler);

impl OpenAiChunks {
    pub fn new(endpoint: Endpoint) -> Self {
        Self(Assembler::new(endpoint))
    }
}

impl StreamDecoder for OpenAiChunks {
    fn event(&mut self, _name: &str, data: &str, chunks: &mut Vec<String>) -> Result<bool, String> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("unreadable stream chunk: {e}"))?;
        if let Some(error) = chunk.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(format!("the provider ended the stream: {message}"));
        }
        self.0.push(&chunk);
        chunks.push(data.to_owned());
        Ok(false)
    }

    fn finish(self) -> Result<Value, String> {
        if !self.0.has_usage() {
            return Err("the stream ended before its usage".into());
        }
        Ok(self.0.finish())
    }
}
