//! Batch keys: which pending jobs may share one provider call.
//!
//! Jobs batch together when they share endpoint, model, priority class and
//! prompt prefix (the system prompt plus the first `prefix_chars`
//! characters of the prompt). Completions and embeddings batches go out as
//! one call with an array, so their jobs must also share every other
//! parameter; a job that cannot share a call (a prompt that is already an
//! array, `n` above 1) gets a batch of its own.

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
    /// Hash of the parameters an array call shares; for a solo job, its id.
    pub params: String,
}

impl BatchKey {
    pub fn of(job: &JobMessage, prefix_chars: usize) -> Self {
        let prefix = prompt_prefix(job.endpoint, &job.body, prefix_chars);
        let params = match job.endpoint {
            Endpoint::ChatCompletions => String::new(),
            Endpoint::Completions | Endpoint::Embeddings => {
                if is_solo(job.endpoint, &job.body) {
                    format!("solo:{}", job.id)
                } else {
                    shared_params_hash(job.endpoint, &job.body)
                }
            }
        };
        Self {
            endpoint: job.endpoint,
            model: job.model.clone(),
            priority: job.priority,
            prefix_hash: short_hash(prefix.as_bytes()),
            params,
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

/// Whether a completions or embeddings job must go out on its own.
fn is_solo(endpoint: Endpoint, body: &Value) -> bool {
    let single = body
        .get(array_field(endpoint))
        .is_some_and(Value::is_string);
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    let best_of = body.get("best_of").and_then(Value::as_u64).unwrap_or(1);
    !single || n != 1 || best_of != 1
}

fn shared_params_hash(endpoint: Endpoint, body: &Value) -> String {
    let mut shared = body.clone();
    if let Some(map) = shared.as_object_mut() {
        map.remove(array_field(endpoint));
    }
    // serde_json maps are ordered by key, so this text is canonical.
    short_hash(shared.to_string().as_bytes())
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
    let prompts = match body.get(array_field(endpoint)) {
        Some(Value::Array(items)) if endpoint != Endpoint::ChatCompletions => items.len() as u64,
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
    estimate_tokens(&prompt_text(endpoint, body)) + completion * prompts * choices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;
    use serde_json::json;

    fn job(endpoint: Endpoint, body: Value) -> JobMessage {
        let record = crate::JobRecord::queued(
            JobId::new(),
            "t".into(),
            endpoint,
            "m".into(),
            Priority::Standard,
            Default::default(),
            chrono::Utc::now(),
            None,
        );
        JobMessage::of(&record, body)
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
        // An array prompt or n > 1 cannot share an array call.
        let solo1 = k(json!({"model": "m", "prompt": ["x"], "max_tokens": 5}));
        let solo2 = k(json!({"model": "m", "prompt": ["x"], "max_tokens": 5}));
        assert_ne!(solo1, solo2);
        assert_ne!(
            k(json!({"model": "m", "prompt": "x", "n": 2})),
            k(json!({"model": "m", "prompt": "x", "n": 2}))
        );
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
