//! The Anthropic Messages adapter. Jobs keep the OpenAI shape on the way
//! in and out; this translates the request (system prompt, roles,
//! max_tokens, stop sequences) and the answer (text, finish reason, usage
//! with cache reads and writes). A batch goes out as a bounded fan-out of
//! single calls (Messages has no array form), each marking the shared
//! system prompt with `cache_control`, so the batch's jobs share the
//! provider's prompt cache. A job that streams gets `"stream": true`, its
//! events relayed as OpenAI chunks as they come (`anthropic_stream`).

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use sluice_core::batching::{content_text, request_tokens};
use sluice_core::{Endpoint, Tier, Usage};

use crate::adapter::AdapterBase;
use crate::anthropic_stream::MessageEvents;
use crate::{Answer, Batch, BatchJob, Provider, ProviderError};

/// The API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The Messages path, as the duration metric names it.
const PATH: &str = "/v1/messages";
/// Anthropic requires `max_tokens`; this is used when a job gives none.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

pub struct AnthropicProvider {
    base: AdapterBase,
}

impl AnthropicProvider {
    pub fn new(base: AdapterBase) -> Self {
        Self { base }
    }

    /// `job`'s call: streamed, its events relayed as OpenAI chunks, when
    /// it asks and the worker takes chunks.
    async fn one(&self, job: &BatchJob, model: &str) -> Result<Answer, ProviderError> {
        let (body, traceparent, id) = (&job.body, job.traceparent.as_deref(), job.id);
        let mut request =
            to_messages(body, model).map_err(|why| self.base.http.terminal(why.to_string()))?;
        let mut headers = vec![("anthropic-version", ANTHROPIC_VERSION.to_owned())];
        if let Some(key) = self.base.http.api_key() {
            headers.push(("x-api-key", key.to_owned()));
        }
        if let Some(tp) = traceparent {
            headers.push((sluice_core::trace::HEADER, tp.to_owned()));
        }
        let url = self.base.http.url("/messages");
        let tokens = request_tokens(Endpoint::ChatCompletions, body);
        let http = &self.base.http;
        let response = match self.base.relay.as_deref().filter(|_| job.stream) {
            Some(relay) => {
                request["stream"] = json!(true);
                let decoder = MessageEvents::new();
                http.post_stream(&url, &headers, &request, PATH, tokens, id, relay, decoder)
                    .await?
            }
            None => {
                http.post(&url, &headers, &request, PATH, tokens, &[id], None)
                    .await?
            }
        };
        // A 2xx that is not a Messages answer will not become one on a retry.
        let mut answer =
            from_messages(&response).map_err(|why| self.base.http.terminal(why.to_string()))?;
        answer.cost_micros = self.base.cost(model, Tier::Realtime, &answer.usage);
        Ok(answer)
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        self.base.http.name()
    }

    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        if batch.endpoint != Endpoint::ChatCompletions {
            let e = self.base.http.terminal(format!(
                "{} is not served by an Anthropic provider (chat completions only)",
                batch.endpoint
            ));
            return batch.jobs.iter().map(|_| Err(e.clone())).collect();
        }
        let model = batch.upstream_model.as_str();
        // By index: a stream over references trips async-trait's bounds.
        futures::stream::iter(0..batch.jobs.len())
            .map(|i| self.one(&batch.jobs[i], model))
            .buffered(self.base.fanout)
            .collect()
            .await
    }
}

/// A chat job that the Messages API cannot express: the job fails with
/// this (a retry, or another Anthropic provider, cannot help).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untranslatable {
    #[error("the job has no messages")]
    NoMessages,
    #[error("message role {0:?} is not supported by the Anthropic adapter")]
    Role(String),
    #[error("the Anthropic Messages API needs the first non-system message to be from the user")]
    NotUserFirst,
    #[error("`{0}` is not supported by the Anthropic adapter")]
    Unsupported(&'static str),
}

/// A Messages response that lacks a part every answer has.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("response without {0}")]
pub struct NotAnAnswer(&'static str);

/// An OpenAI chat body as a Messages request.
pub fn to_messages(body: &Value, model: &str) -> Result<Value, Untranslatable> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or(Untranslatable::NoMessages)?;
    let mut system = Vec::new();
    let mut turns: Vec<(String, String)> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = content_text(m.get("content").unwrap_or(&Value::Null));
        match role {
            "system" | "developer" => system.push(text),
            "user" | "assistant" => match turns.last_mut() {
                // Messages wants alternating turns: merge a repeated role.
                Some((last, acc)) if last == role => {
                    acc.push_str("\n\n");
                    acc.push_str(&text);
                }
                _ => turns.push((role.to_owned(), text)),
            },
            other => return Err(Untranslatable::Role(other.to_owned())),
        }
    }
    if turns.first().is_none_or(|(role, _)| role != "user") {
        return Err(Untranslatable::NotUserFirst);
    }
    for unsupported in [
        "tools",
        "functions",
        "tool_choice",
        "response_format",
        "logprobs",
    ] {
        if body.get(unsupported).is_some_and(|v| !v.is_null()) {
            return Err(Untranslatable::Unsupported(unsupported));
        }
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    request.insert("max_tokens".into(), json!(max_tokens));
    request.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, text)| json!({"role": role, "content": text}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        // The shared prefix of the batch: marked for the prompt cache.
        request.insert(
            "system".into(),
            json!([{"type": "text", "text": system.join("\n\n"), "cache_control": {"type": "ephemeral"}}]),
        );
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            request.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            request.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    for passed in ["temperature", "top_p"] {
        if let Some(v) = body.get(passed).filter(|v| !v.is_null()) {
            request.insert(passed.into(), v.clone());
        }
    }
    Ok(Value::Object(request))
}

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// A Messages answer as an OpenAI chat completion, with its usage.
pub fn from_messages(response: &Value) -> Result<Answer, NotAnAnswer> {
    let content = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or(NotAnAnswer("content"))?;
    let text: String = content
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let u = response.get("usage").ok_or(NotAnAnswer("usage"))?;
    let field = |name: &str| u.get(name).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (field("input_tokens"), field("output_tokens"));
    let (read, write) = (
        field("cache_read_input_tokens"),
        field("cache_creation_input_tokens"),
    );
    // OpenAI counts every prompt token in prompt_tokens, cached or not.
    let mut usage = Usage::new(input + read + write, output, read);
    usage.cache_write_tokens = write;
    let finish_reason = finish_reason(response.get("stop_reason").and_then(Value::as_str));
    let body = json!({
        "id": response.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "cache_creation_input_tokens": usage.cache_write_tokens,
        },
    });
    Ok(Answer {
        body,
        usage,
        cost_micros: None,
        tier: Tier::Realtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_body_becomes_a_messages_request() {
        let body = json!({"model": "claude", "max_tokens": 50, "stop": "END", "temperature": 0,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "three"}]});
        let r = to_messages(&body, "claude-x").unwrap();
        assert_eq!(r["model"], "claude-x");
        assert_eq!(r["max_tokens"], 50);
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["temperature"], 0);
        assert_eq!(r["system"][0]["text"], "Be brief.");
        assert_eq!(r["system"][0]["cache_control"]["type"], "ephemeral");
        let turns = r["messages"].as_array().unwrap();
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0], json!({"role": "user", "content": "one\n\ntwo"}));
        assert_eq!(turns[2]["content"], "three");
    }

    #[test]
    fn what_messages_cannot_express_is_refused() {
        let assistant_first = json!({"messages": [{"role": "assistant", "content": "hi"}]});
        assert_eq!(
            to_messages(&assistant_first, "m"),
            Err(Untranslatable::NotUserFirst)
        );
        let tools = json!({"messages": [{"role": "user", "content": "x"}], "tools": []});
        assert_eq!(
            to_messages(&tools, "m"),
            Err(Untranslatable::Unsupported("tools"))
        );
        let tool_role = json!({"messages": [{"role": "tool", "content": "x"}]});
        assert_eq!(
            to_messages(&tool_role, "m"),
            Err(Untranslatable::Role("tool".into()))
        );
        assert_eq!(
            from_messages(&json!({"content": []})).unwrap_err(),
            NotAnAnswer("usage")
        );
        let no_max = json!({"messages": [{"role": "user", "content": "x"}]});
        assert_eq!(
            to_messages(&no_max, "m").unwrap()["max_tokens"],
            DEFAULT_MAX_TOKENS
        );
    }

    #[test]
    fn an_answer_becomes_a_chat_completion_with_cache_usage() {
        let response = json!({"id": "msg_1", "type": "message", "model": "claude-x", "stop_reason": "max_tokens",
            "content": [{"type": "text", "text": "mock:abc"}, {"type": "text", "text": " tok"}],
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5}});
        let a = from_messages(&response).unwrap();
        assert_eq!(a.body["choices"][0]["message"]["content"], "mock:abc tok");
        assert_eq!(a.body["choices"][0]["finish_reason"], "length");
        assert_eq!(a.usage.prompt_tokens, 115);
        assert_eq!(a.usage.cached_tokens, 100);
        assert_eq!(a.usage.cache_write_tokens, 5);
        assert_eq!(a.usage.completion_tokens, 7);
        assert_eq!(a.usage.total_tokens, 122);
    }
}
