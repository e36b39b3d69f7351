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

use super::conversation::{answered, require_messages, Conversation};
use super::{
    parse_body, reject_stream, require_model, resolve_max_tokens, resolve_n, respond, Completion,
    Usage,
};
use crate::error::ApiError;
use crate::prefix::{Piece, Scope};
use crate::state::Shared;
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
    let messages = require_messages(
        request.messages,
        "you must provide a non-empty messages array",
    )?;
    let (param, requested) = match request.max_completion_tokens {
        Some(limit) => ("max_completion_tokens", Some(limit)),
        None => ("max_tokens", request.max_tokens),
    };
    let max_tokens = resolve_max_tokens(requested, param, shared.options().default_max_tokens)?;
    let n = resolve_n(request.n)?;

    let texts: Vec<String> = messages.iter().map(Message::text).collect();
    let answered = answered(messages.iter().map(|message| message.role.as_str()));
    let prompt_tokens = texts.iter().map(|text| count_tokens(text)).sum::<u64>();
    let completion_tokens = max_tokens.saturating_mul(n);
    let conversation = Conversation {
        scope: Scope {
            api: "chat",
            model: &model,
            cache_key: request.prompt_cache_key.as_deref(),
        },
        pieces: messages
            .iter()
            .zip(&texts)
            .take(answered)
            .map(|(message, text)| Piece {
                role: &message.role,
                text,
                boundary: true,
            }),
        prompt_tokens,
        decode_tokens: max_tokens,
        completion_tokens,
        bill_cache_writes: false,
    };
    let (receipt, cached) = conversation.serve(&shared, PATH).await?;

    let prompt = texts.get(answered).map(String::as_str).unwrap_or_default();
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
    let usage = Usage::new(prompt_tokens, completion_tokens, cached.read_tokens);
    let response = Completion::new("chat.completion", "chatcmpl-", &body, model, choices, usage);
    Ok(respond(receipt, response))
}
