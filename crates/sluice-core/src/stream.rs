//! Streamed answers (`stream: true` on chat and completions), in OpenAI's
//! wire shapes, free of I/O.
//!
//! A worker calls the provider with `stream: true` and relays each chunk,
//! as the provider sent it, into the job's chunk log ([`StreamEntry`]);
//! every provider call for the job starts with [`StreamEntry::Begin`], so a
//! reader can tell a restarted call (a retry, a fallback, a redelivery)
//! from more of the same one. The worker also assembles the chunks into the
//! answer the job ends with ([`Assembler`]): the same body a call without
//! `stream` returns, so results, cache, usage and ledger do not care
//! whether a job streamed.
//!
//! An answer that did not stream (a cache hit, a job that joined one in
//! flight, a provider that answered in one piece) is streamed to its caller
//! from its result ([`chunks_of`]). Either way [`for_client`] shapes each
//! chunk for what the caller asked (`stream_options.include_usage`).

use serde_json::{json, Map, Value};

use crate::Endpoint;

/// One entry of a job's chunk log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEntry {
    /// A provider call for the job starts streaming.
    Begin,
    /// One chunk, the JSON text of one `data:` event.
    Chunk(String),
}

impl StreamEntry {
    /// The field and value the entry is stored as.
    pub fn field(&self) -> (&'static str, &str) {
        match self {
            Self::Begin => ("b", ""),
            Self::Chunk(text) => ("c", text),
        }
    }

    /// The entry stored as `field` = `value`; `None` for a field this
    /// version does not know.
    pub fn from_field(field: &str, value: String) -> Option<Self> {
        match field {
            "b" => Some(Self::Begin),
            "c" => Some(Self::Chunk(value)),
            _ => None,
        }
    }
}

/// The endpoints that stream.
pub fn streams(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
}

/// The body a streaming provider call sends: `stream: true`, and usage
/// asked for, which the ledger needs whatever the caller asked.
pub fn streaming_body(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.insert("stream".into(), json!(true));
        map.insert("stream_options".into(), json!({"include_usage": true}));
    }
    body
}

/// Builds the answer a streamed call amounts to, chunk by chunk.
#[derive(Debug)]
pub struct Assembler {
    endpoint: Endpoint,
    /// The envelope (id, created, model, …) from the first chunk.
    envelope: Map<String, Value>,
    /// Each choice so far, by its index.
    choices: std::collections::BTreeMap<u64, Value>,
    usage: Option<Value>,
}

impl Assembler {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            envelope: Map::new(),
            choices: Default::default(),
            usage: None,
        }
    }

    /// Adds one chunk.
    pub fn push(&mut self, chunk: &Value) {
        let Some(fields) = chunk.as_object() else {
            return;
        };
        for (name, value) in fields {
            match name.as_str() {
                "choices" | "object" => {}
                "usage" => {
                    if !value.is_null() {
                        self.usage = Some(value.clone());
                    }
                }
                _ => {
                    if !value.is_null() || !self.envelope.contains_key(name) {
                        self.envelope.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        for delta in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = self
                .choices
                .entry(index)
                .or_insert_with(|| match self.endpoint {
                    Endpoint::ChatCompletions => json!({
                    "index": index, "message": {"role": "assistant", "content": null},
                    "logprobs": null, "finish_reason": null}),
                    _ => {
                        json!({"index": index, "text": "", "logprobs": null, "finish_reason": null})
                    }
                });
            merge_choice(self.endpoint, choice, delta);
        }
    }

    /// Whether the provider's usage has arrived (the last chunk before
    /// `[DONE]` when usage was asked for).
    pub fn has_usage(&self) -> bool {
        self.usage.is_some()
    }

    /// The answer: the body a call without `stream` would have returned.
    pub fn finish(self) -> Value {
        let mut body = self.envelope;
        body.insert(
            "object".into(),
            json!(match self.endpoint {
                Endpoint::ChatCompletions => "chat.completion",
                _ => "text_completion",
            }),
        );
        body.insert(
            "choices".into(),
            Value::Array(self.choices.into_values().collect()),
        );
        body.insert("usage".into(), self.usage.unwrap_or(Value::Null));
        Value::Object(body)
    }
}

/// Folds one choice's delta into the choice built so far.
fn merge_choice(endpoint: Endpoint, choice: &mut Value, delta: &Value) {
    if let Some(reason) = delta.get("finish_reason").filter(|r| !r.is_null()) {
        choice["finish_reason"] = reason.clone();
    }
    if let Some(logprobs) = delta.get("logprobs").filter(|l| !l.is_null()) {
        append_logprobs(&mut choice["logprobs"], logprobs);
    }
    if endpoint != Endpoint::ChatCompletions {
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            append_text(&mut choice["text"], text);
        }
        return;
    }
    let Some(part) = delta.get("delta").and_then(Value::as_object) else {
        return;
    };
    let message = &mut choice["message"];
    for (name, value) in part {
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("content" | "refusal", Value::String(text)) => append_text(&mut message[name], text),
            ("tool_calls", Value::Array(calls)) => {
                for call in calls {
                    merge_tool_call(message, call);
                }
            }
            _ => message[name] = value.clone(),
        }
    }
}

/// Folds a tool call's delta (matched by its `index`) into the message.
fn merge_tool_call(message: &mut Value, delta: &Value) {
    let index = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
    if !message["tool_calls"].is_array() {
        message["tool_calls"] = json!([]);
    }
    let Some(calls) = message["tool_calls"].as_array_mut() else {
        return;
    };
    let position = match calls
        .iter()
        .position(|c| c.get("index") == Some(&json!(index)))
    {
        Some(position) => position,
        None => {
            calls.push(json!({"index": index, "function": {"arguments": ""}}));
            calls.len() - 1
        }
    };
    let call = &mut calls[position];
    for (name, value) in delta.as_object().into_iter().flatten() {
        match (name.as_str(), value) {
            ("function", Value::Object(function)) => {
                for (field, part) in function {
                    match (field.as_str(), part) {
                        ("arguments", Value::String(text)) => {
                            append_text(&mut call["function"]["arguments"], text)
                        }
                        _ => call["function"][field] = part.clone(),
                    }
                }
            }
            (_, Value::Null) => {}
            _ => call[name] = value.clone(),
        }
    }
}

fn append_text(slot: &mut Value, text: &str) {
    match slot {
        Value::String(so_far) => so_far.push_str(text),
        _ => *slot = json!(text),
    }
}

/// Appends a chunk's logprobs: chat's `content` (and `refusal`) lists, or
/// completions' parallel `tokens`, `token_logprobs`, `top_logprobs` and
/// `text_offset` lists.
fn append_logprobs(slot: &mut Value, logprobs: &Value) {
    if slot.is_null() {
        *slot = logprobs.clone();
        return;
    }
    for (name, value) in logprobs.as_object().into_iter().flatten() {
        match (&mut slot[name], value) {
            (Value::Array(so_far), Value::Array(more)) => so_far.extend(more.iter().cloned()),
            (other, value) => *other = value.clone(),
        }
    }
}

/// The chunks that stream a finished `result` (a body of `endpoint`): per
/// choice its whole content in one chunk, then its `finish_reason`, then
/// the usage. Assembling them gives `result` back.
pub fn chunks_of(endpoint: Endpoint, result: &Value) -> Vec<Value> {
    let mut envelope = result.as_object().cloned().unwrap_or_default();
    let choices = envelope.remove("choices");
    let usage = envelope.remove("usage").unwrap_or(Value::Null);
    envelope.insert(
        "object".into(),
        json!(match endpoint {
            Endpoint::ChatCompletions => "chat.completion.chunk",
            _ => "text_completion",
        }),
    );
    let chunk = |choices: Vec<Value>| {
        let mut chunk = envelope.clone();
        chunk.insert("choices".into(), Value::Array(choices));
        Value::Object(chunk)
    };
    let mut chunks = Vec::new();
    let mut ends = Vec::new();
    for choice in choices
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);
        let finish_reason = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        let body = match endpoint {
            Endpoint::ChatCompletions => {
                let mut delta = choice.get("message").cloned().unwrap_or(json!({}));
                if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for (i, call) in calls.iter_mut().enumerate() {
                        call["index"] = json!(i);
                    }
                }
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null})
            }
            _ => json!({"index": index, "text": choice.get("text").cloned().unwrap_or(json!("")),
                        "logprobs": logprobs, "finish_reason": null}),
        };
        chunks.push(chunk(vec![body]));
        ends.push(match endpoint {
            Endpoint::ChatCompletions => {
                json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish_reason})
            }
            _ => json!({"index": index, "text": "", "logprobs": null, "finish_reason": finish_reason}),
        });
    }
    chunks.extend(ends.into_iter().map(|end| chunk(vec![end])));
    if !usage.is_null() {
        let mut last = chunk(Vec::new());
        last["usage"] = usage;
        chunks.push(last);
    }
    chunks
}

/// `chunk` as the caller sees it: with `include_usage`, every chunk has a
/// `usage` field (null but on the last); without, none has, and the usage
/// chunk is left out (`None`).
pub fn for_client(mut chunk: Value, include_usage: bool) -> Option<Value> {
    let map = chunk.as_object_mut()?;
    if include_usage {
        map.entry("usage").or_insert(Value::Null);
        return Some(chunk);
    }
    let usage_only = map.get("usage").is_some_and(|u| !u.is_null())
        && map
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
    if usage_only {
        return None;
    }
    map.remove("usage");
    Some(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_answer() -> Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "service_tier": "default",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hello there"},
                 "logprobs": null, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                 "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        })
    }

    fn assemble(endpoint: Endpoint, chunks: &[Value]) -> Value {
        let mut assembler = Assembler::new(endpoint);
        for chunk in chunks {
            assembler.push(chunk);
        }
        assembler.finish()
    }

    #[test]
    fn a_chat_answer_streamed_from_its_result_assembles_back_to_it() {
        let answer = chat_answer();
        let chunks = chunks_of(Endpoint::ChatCompletions, &answer);
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        let mut expected = answer.clone();
        // A streamed tool call carries its index, as OpenAI's chunks do.
        expected["choices"][1]["message"]["tool_calls"][0]["index"] = json!(0);
        assert_eq!(assemble(Endpoint::ChatCompletions, &chunks), expected);
    }

    #[test]
    fn deltas_piece_by_piece_make_the_whole_message_and_usage() {
        let base =
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"});
        let with = |choices: Value, usage: Value| {
            let mut c = base.clone();
            c["choices"] = choices;
            c["usage"] = usage;
            c
        };
        let chunks = [
            with(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
                Value::Null,
            ),
            with(
                json!([{"index": 0, "delta": {"content": "hel"}, "finish_reason": null}]),
                Value::Null,
            ),
            with(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}}]),
                Value::Null,
            ),
            with(
                json!([{"index": 0, "delta": {"content": "lo", "tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]),
                Value::Null,
            ),
            with(
                json!([{"index": 0, "delta": {}, "finish_reason": "length"}]),
                Value::Null,
            ),
            with(
                json!([]),
                json!({"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}),
            ),
        ];
        let mut assembler = Assembler::new(Endpoint::ChatCompletions);
        for chunk in &chunks {
            assert!(!assembler.has_usage());
            assembler.push(chunk);
        }
        assert!(assembler.has_usage());
        let answer = assembler.finish();
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["choices"][0]["message"]["content"], "hello");
        assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
        assert_eq!(answer["choices"][0]["finish_reason"], "length");
        let call = &answer["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert_eq!(
            (call["id"].as_str(), call["function"]["name"].as_str()),
            (Some("t"), Some("f"))
        );
        assert_eq!(answer["usage"]["total_tokens"], 4);
    }

    #[test]
    fn completions_choices_assemble_by_index() {
        let answer = json!({
            "id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m",
            "choices": [
                {"index": 0, "text": "a b", "logprobs": null, "finish_reason": "length"},
                {"index": 1, "text": "c", "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let mut chunks = chunks_of(Endpoint::Completions, &answer);
        // Interleaved, as a provider streams several choices.
        chunks.swap(0, 1);
        assert_eq!(assemble(Endpoint::Completions, &chunks), answer);
    }

    #[test]
    fn usage_reaches_the_client_only_when_it_asked() {
        let chunks = chunks_of(Endpoint::ChatCompletions, &chat_answer());
        let with: Vec<Value> = chunks
            .iter()
            .filter_map(|c| for_client(c.clone(), true))
            .collect();
        assert_eq!(with.len(), chunks.len());
        assert!(with[..with.len() - 1].iter().all(|c| c["usage"].is_null()));
        assert_eq!(with.last().unwrap()["usage"]["total_tokens"], 7);
        let without: Vec<Value> = chunks
            .iter()
            .filter_map(|c| for_client(c.clone(), false))
            .collect();
        assert_eq!(without.len(), chunks.len() - 1);
        assert!(without.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn a_streaming_body_asks_for_usage() {
        let body =
            streaming_body(json!({"model": "m", "stream_options": {"include_usage": false}}));
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(
            StreamEntry::from_field("c", "{}".into()),
            Some(StreamEntry::Chunk("{}".into()))
        );
        assert_eq!(
            StreamEntry::from_field(StreamEntry::Begin.field().0, String::new()),
            Some(StreamEntry::Begin)
        );
    }
}
