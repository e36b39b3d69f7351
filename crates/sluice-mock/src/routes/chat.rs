//! `POST /v1/chat/completions`.
//!
//! The answer is generated from the content of the last `user` message;
//! `prompt_tokens` counts the content of every message. The messages
//! before the answered one are the cacheable prefix (see
//! [`prefix`](crate::prefix)), scoped by `prompt_cache_key` when given.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{
    parse_body, reject_stream, require_model, resolve_max_tokens, resolve_n, respond, response_id,
    unix_now, Usage,
};
use crate::error::ApiError;
use crate::latency::Sequence;
use crate::prefix::{piece_prefixes, Piece, Scope};
use crate::state::{Shared, Work};
use crate::text::{count_tokens, generate};

pub(super) const PATH: &str = "/v1/chat/completions";

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    prompt_cache_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// A message's content: a string, or an array of parts of which only the
/// `text` parts count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Message {
    /// The text of the message; text parts are joined by newlines, so a
    /// single part reads the same as a plain string.
    fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|part| part.kind == "text")
                .filter_map(|part| part.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ChatResponse {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct Choice {
    index: u64,
    message: AssistantMessage,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
struct AssistantMessage {
    role: &'static str,
    content: String,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_body(&body)?;
    let model = require_model(request.model)?;
    reject_stream(request.stream)?;
    let messages = match request.messages {
        Some(messages) if !messages.is_empty() => messages,
        _ => {
            return Err(ApiError::invalid(
                "messages",
                "you must provide a non-empty messages array",
            ))
        }
    };
    let (param, requested) = match request.max_completion_tokens {
        Some(limit) => ("max_completion_tokens", Some(limit)),
        None => ("max_tokens", request.max_tokens),
    };
    let max_tokens = resolve_max_tokens(requested, param, shared.options().default_max_tokens)?;
    let n = resolve_n(request.n)?;

    let texts: Vec<String> = messages.iter().map(Message::text).collect();
    let prompt_tokens = texts.iter().map(|text| count_tokens(text)).sum::<u64>();
    // The last user message; a conversation without one (say, only a
    // system prompt) is answered from its last message.
    let answered = messages
        .iter()
        .rposition(|message| message.role == "user")
        .unwrap_or(messages.len().saturating_sub(1));
    let prompt = texts.get(answered).map(String::as_str).unwrap_or_default();
    let completion_tokens = max_tokens.saturating_mul(n);

    let admission = shared.admit(&model, prompt_tokens.saturating_add(completion_tokens))?;
    let scope = Scope {
        api: "chat",
        model: &model,
        cache_key: request.prompt_cache_key.as_deref(),
    };
    let pieces = messages
        .iter()
        .zip(&texts)
        .take(answered)
        .map(|(message, text)| Piece {
            role: &message.role,
            text,
            boundary: true,
        });
    let boundaries = piece_prefixes(&shared.options().prefix_cache, scope, pieces);
    let cached_tokens = shared.cache_lookup(&boundaries).read_tokens;
    let work = Work {
        prompts: 1,
        sequences: vec![Sequence {
            prompt_tokens,
            cached_tokens,
            decode_tokens: max_tokens,
        }],
        completion_tokens,
        cache_write_tokens: 0,
    };
    let receipt = shared.serve(PATH, &model, &admission, &work).await;

    let content = generate(prompt, max_tokens);
    let choices = (0..n)
        .map(|index| Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content: content.clone(),
            },
            logprobs: None,
            finish_reason: "length",
        })
        .collect();
    let response = ChatResponse {
        id: response_id("chatcmpl-", &body),
        object: "chat.completion",
        created: unix_now(),
        model,
        choices,
        usage: Usage::new(prompt_tokens, completion_tokens, cached_tokens),
    };
    Ok(respond(receipt, response))
}
