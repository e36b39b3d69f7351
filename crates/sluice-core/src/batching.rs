//! Batch keys: which pending jobs may share one provider call.
//!
//! Jobs batch together when they share endpoint, model, priority class and
//! prompt prefix (the system prompt plus the first `prefix_chars`
//! characters of the prompt). Completions and embeddings batches go out as
//! one call with an array, so their jobs must also share every other
//! parameter (`n` included); a job whose prompt or input is itself a list
//! contributes each of its items ([`array_items`]).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Endpoint, JobMessage, Priority};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub endpoint: Endpoint,
    pub model: String,
    pub priority: Priority,
    /// Hex SHA-256 (16 digits) of the prompt prefix; also the provider's prompt-cache key.
    pub prefix_hash: String,
    /// Hash of the parameters an array call shares.
    pub params: String,
    /// Whether the jobs have a deadline: only those may wait for a cheaper
    /// tier, so they do not share an array call with jobs that cannot.
    pub deadline: bool,
    /// Whether the jobs stream: a streaming job goes out in a call of its
    /// own, so it never shares an array call with jobs that do not.
    pub stream: bool,
}

impl BatchKey {
    pub fn of(job: &JobMessage, prefix_chars: usize) -> Self {
        let prefix = prompt_prefix(job.endpoint, &job.body, prefix_chars);
        let params = match job.endpoint {
            Endpoint::ChatCompletions => String::new(),
            Endpoint::Completions | Endpoint::Embeddings => {
                shared_params_hash(job.endpoint, &job.body)
            }
        };
        Self {
            endpoint: job.endpoint,
            model: job.model.clone(),
            priority: job.priority,
            prefix_hash: short_hash(prefix.as_bytes()),
            params,
            deadline: job.may_wait(),
            stream: job.stream,
        }
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

/// The field that holds what varies between jobs of one array call.
fn array_field(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "prompt",
        Endpoint::Embeddings => "input",
        Endpoint::ChatCompletions => "messages",
    }
}

/// The items a completions or embeddings job's `prompt` or `input`
/// contributes to an array call, in order: a string, or one list of token
/// ids, is one item; a list of strings, or of token-id lists, is one item
/// each.
pub fn array_items(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) if !items.is_empty() && !items.iter().all(Value::is_number) => {
            items.iter().collect()
        }
        one => vec![one],
    }
}

/// Whether `value` is a `prompt` or `input` a provider takes: a string, or
/// a non-empty list of strings, of token ids, or of non-empty token-id
/// lists.
pub fn is_array_input(value: &Value) -> bool {
    let token_ids = |v: &Value| match v {
        Value::Array(ids) => !ids.is_empty() && ids.iter().all(Value::is_u64),
        _ => false,
    };
    match value {
        Value::String(_) => true,
        Value::Array(items) if !items.is_empty() => {
            items.iter().all(Value::is_string)
                || items.iter().all(Value::is_u64)
                || items.iter().all(token_ids)
        }
        _ => false,
    }
}

/// The hash of what the jobs of one array call must share: every
/// parameter but the prompt (input) itself, and whether that is text or
/// token ids (a provider takes one kind per call).
fn shared_params_hash(endpoint: Endpoint, body: &Value) -> String {
    let mut shared = body.clone();
    let tokens = body
        .get(array_field(endpoint))
        .map(array_items)
        .and_then(|items| items.first().map(|item| item.is_array()))
        .unwrap_or(false);
    if let Some(map) = shared.as_object_mut() {
        map.remove(array_field(endpoint));
    }
    // serde_json maps are ordered by key, so this text is canonical.
    let kind = if tokens { "tokens" } else { "text" };
    short_hash(format!("{kind}:{shared}").as_bytes())
}

/// Text of a message's `content`: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn is_system(message: &Value) -> bool {
    matches!(
        message.get("role").and_then(Value::as_str),
        Some("system" | "developer")
    )
}

/// All the prompt text of a job, for token estimates.
pub fn prompt_text(endpoint: Endpoint, body: &Value) -> String {
    match endpoint {
        Endpoint::ChatCompletions => body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        Endpoint::Completions | Endpoint::Embeddings => match body.get(array_field(endpoint)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        },
    }
}

/// The prefix a batch shares: the system prompt, then `chars` characters
/// of the rest of the prompt.
pub fn prompt_prefix(endpoint: Endpoint, body: &Value, chars: usize) -> String {
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = body.get("messages").and_then(Value::as_array);
            let messages = messages.map(Vec::as_slice).unwrap_or_default();
            let mut prefix: String = messages
                .iter()
                .filter(|m| is_system(m))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                .collect::<Vec<_>>()
                .join("\n");
            if chars > 0 {
                if let Some(first) = messages.iter().find(|m| !is_system(m)) {
                    let text = content_text(first.get("content").unwrap_or(&Value::Null));
                    prefix.push('\u{1f}');
                    prefix.extend(text.chars().take(chars));
                }
            }
            prefix
        }
        Endpoint::Completions => prompt_text(endpoint, body).chars().take(chars).collect(),
        Endpoint::Embeddings => String::new(),
    }
}

/// A quick estimate of a text's tokens (about four bytes a token), for
/// batch sizing only: Sluice never bills from it.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// What a provider's token limiter charges for a request before it runs:
/// the prompt (estimated) plus the completion it may generate
/// (`max_tokens`, or a default when the body gives none) for each prompt
/// and choice. Used for fleet budgets, never for billing.
pub fn request_tokens(endpoint: Endpoint, body: &Value) -> u64 {
    estimate_tokens(&prompt_text(endpoint, body)) + completion_allowance(endpoint, body)
}

/// The most completion tokens a request may generate: its `max_tokens`
/// (`max_completion_tokens` for chat), or a default when the body gives
/// none, for each prompt and choice.
pub fn completion_allowance(endpoint: Endpoint, body: &Value) -> u64 {
    let prompts = match body.get(array_field(endpoint)) {
        Some(items) if endpoint != Endpoint::ChatCompletions => array_items(items).len() as u64,
        _ => 1,
    };
    let choices = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let completion = match endpoint {
        Endpoint::Embeddings => 0,
        Endpoint::Completions => body.get("max_tokens").and_then(Value::as_u64).unwrap_or(16),
        Endpoint::ChatCompletions => body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(256),
    };
    completion * prompts * choices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;
    use serde_json::json;

    fn job(endpoint: Endpoint, body: Value) -> JobMessage {
        JobMessage::new(JobId::new(), "t", endpoint, "m", body, chrono::Utc::now())
    }

    fn chat(system: &str, user: &str) -> JobMessage {
        job(
            Endpoint::ChatCompletions,
            json!({"model": "m", "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user}]}),
        )
    }

    #[test]
    fn chat_jobs_batch_by_system_prompt() {
        let a = BatchKey::of(&chat("classify", "one"), 0);
        let b = BatchKey::of(&chat("classify", "two"), 0);
        let c = BatchKey::of(&chat("summarise", "one"), 0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // With a prefix length, the leading user text counts too.
        assert_ne!(
            BatchKey::of(&chat("s", "one"), 3),
            BatchKey::of(&chat("s", "two"), 3)
        );
        assert_eq!(
            BatchKey::of(&chat("s", "one!"), 3),
            BatchKey::of(&chat("s", "one?"), 3)
        );
    }

    #[test]
    fn completions_batch_only_with_equal_parameters() {
        let k = |body| BatchKey::of(&job(Endpoint::Completions, body), 0);
        let a = k(json!({"model": "m", "prompt": "x", "max_tokens": 5}));
        let b = k(json!({"max_tokens": 5, "prompt": "y", "model": "m"}));
        let c = k(json!({"model": "m", "prompt": "x", "max_tokens": 6}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // An array prompt shares a call with single ones; `n` is a
        // parameter like any other.
        assert_eq!(
            a,
            k(json!({"model": "m", "prompt": ["x", "y"], "max_tokens": 5}))
        );
        // Token ids do not share a call with text.
        assert_ne!(
            a,
            k(json!({"model": "m", "prompt": [1, 2], "max_tokens": 5}))
        );
        assert_eq!(
            k(json!({"model": "m", "prompt": [1, 2], "max_tokens": 5})),
            k(json!({"model": "m", "prompt": [[3], [4]], "max_tokens": 5}))
        );
        let n2 = k(json!({"model": "m", "prompt": "x", "max_tokens": 5, "n": 2}));
        assert_ne!(a, n2);
        assert_eq!(
            n2,
            k(json!({"model": "m", "prompt": ["z"], "max_tokens": 5, "n": 2}))
        );
    }

    #[test]
    fn array_items_are_what_each_job_adds_to_an_array_call() {
        assert_eq!(array_items(&json!("a")), vec![&json!("a")]);
        assert_eq!(
            array_items(&json!(["a", "b"])),
            vec![&json!("a"), &json!("b")]
        );
        // A list of token ids is one prompt; a list of such lists is many.
        assert_eq!(array_items(&json!([1, 2, 3])), vec![&json!([1, 2, 3])]);
        assert_eq!(
            array_items(&json!([[1, 2], [3]])),
            vec![&json!([1, 2]), &json!([3])]
        );
        for good in [
            json!("a"),
            json!(["a"]),
            json!([1, 2]),
            json!([[1], [2, 3]]),
        ] {
            assert!(is_array_input(&good), "{good}");
        }
        for bad in [
            json!([]),
            json!([[]]),
            json!(["a", 1]),
            json!([[1], "a"]),
            json!({}),
            json!(1),
            json!([-1]),
        ] {
            assert!(!is_array_input(&bad), "{bad}");
        }
    }

    #[test]
    fn request_tokens_count_prompts_and_the_completion_allowance() {
        let chat = json!({"messages": [{"role": "user", "content": "12345678"}], "max_tokens": 10});
        assert_eq!(request_tokens(Endpoint::ChatCompletions, &chat), 2 + 10);
        let batch = json!({"prompt": ["1234", "5678"], "max_tokens": 5, "n": 2});
        assert_eq!(request_tokens(Endpoint::Completions, &batch), 3 + 5 * 2 * 2);
        assert_eq!(
            request_tokens(Endpoint::Embeddings, &json!({"input": ["12345678"]})),
            2
        );
    }

    #[test]
    fn prompt_text_reads_string_and_part_contents() {
        let body = json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]});
        assert_eq!(prompt_text(Endpoint::ChatCompletions, &body), "a\nb");
        assert_eq!(estimate_tokens("12345678"), 2);
        assert_eq!(estimate_tokens(""), 1);
    }
}
