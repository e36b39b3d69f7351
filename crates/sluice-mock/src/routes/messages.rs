//! `POST /v1/messages`: Anthropic's Messages API.
//!
//! Requires the `anthropic-version` header (any value) and, when a key is
//! configured, `x-api-key`. The answer is [`generate`]d from the text of
//! the last `user` message, as on the chat route; `max_tokens` is required
//! and is always the output length, so `stop_reason` is `"max_tokens"`
//! (`stop_sequences` are accepted and never matched). Only `text` blocks
//! carry tokens; other blocks count for nothing.
//!
//! The prefix cache follows `cache_control` breakpoints (see
//! [`prefix`](crate::prefix)): the prefix up to and including a marked
//! block is read from the cache if it was stored before
//! (`cache_read_input_tokens`), otherwise written
//! (`cache_creation_input_tokens`, billed at 1.25 × the input price).
//! `input_tokens` is what is left, as Anthropic reports it; the bill's
//! `prompt_tokens` is the sum of the three. `usage.service_tier` says
//! `"standard"`, or `"batch"` in a message batch's results.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::call::{Call, ModelRoute};
use super::conversation::{answered, require_messages, Conversation};
use super::stream::Streaming;
use super::{parse_body, require_model, resolve_max_tokens, response_id};
use crate::error::{AnthropicError, ApiError};
use crate::prefix::{Piece, Scope};
use crate::pricing::Tier;
use crate::state::{Shared, Work};
use crate::text::{count_tokens, generate};

pub(crate) const PATH: &str = "/v1/messages";

/// The header every Anthropic route requires.
pub(crate) const VERSION_HEADER: &str = "anthropic-version";

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: Option<String>,
    system: Option<Content>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    // Accepted for compatibility; the mock never stops early.
    #[allow(dead_code)]
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A string, or an array of content blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    /// Any non-null value (`{"type": "ephemeral"}`) marks a breakpoint.
    #[serde(default)]
    cache_control: Option<serde_json::Value>,
}

/// One block of the flattened prompt.
struct Flat<'a> {
    role: &'a str,
    text: &'a str,
    breakpoint: bool,
}

impl Content {
    fn flatten<'a>(&'a self, role: &'a str, out: &mut Vec<Flat<'a>>) {
        match self {
            Content::Text(text) => out.push(Flat {
                role,
                text,
                breakpoint: false,
            }),
            Content::Blocks(blocks) => out.extend(blocks.iter().map(|block| Flat {
                role,
                text: block.text().unwrap_or_default(),
                breakpoint: block.cache_control.as_ref().is_some_and(|c| !c.is_null()),
            })),
        }
    }

    /// The text, text blocks joined by newlines (as on the chat route).
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(Block::text)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl Block {
    fn text(&self) -> Option<&str> {
        (self.kind == "text")
            .then_some(self.text.as_deref())
            .flatten()
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct MessagesResponse {
    pub(super) id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    pub(super) model: String,
    pub(super) content: Vec<TextBlock>,
    pub(super) stop_reason: &'static str,
    stop_sequence: Option<String>,
    pub(super) usage: AnthropicUsage,
}

#[derive(Debug, Serialize)]
pub(super) struct TextBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    pub(super) text: String,
}

#[derive(Debug, Serialize)]
pub(super) struct AnthropicUsage {
    input_tokens: u64,
    pub(super) output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    service_tier: &'static str,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AnthropicError> {
    require_version(&headers)?;
    Ok(super::stream::serve_paced::<Messages, _>(
        &shared,
        &body,
        super::messages_stream::MessageEvents::new,
    )
    .await?)
}

/// A 400 unless the request carries `anthropic-version` (any value).
pub(crate) fn require_version(headers: &HeaderMap) -> Result<(), AnthropicError> {
    if headers.contains_key(VERSION_HEADER) {
        Ok(())
    } else {
        Err(ApiError::invalid(VERSION_HEADER, "anthropic-version: header is required").into())
    }
}

/// The messages route, for [`ModelRoute`].
pub(crate) struct Messages;

/// A messages request, validated.
pub(crate) struct Parsed {
    system: Option<Content>,
    messages: Vec<Message>,
    max_tokens: u64,
    prompt_tokens: u64,
}

impl ModelRoute for Messages {
    const PATH: &'static str = PATH;
    type Request = Parsed;
    type Answer = MessagesResponse;

    fn parse(_shared: &Shared, body: &[u8]) -> Result<Call<Parsed>, ApiError> {
        let request: MessagesRequest = parse_body(body)?;
        let model = require_model(request.model)?;
        let messages = require_messages(
            request.messages,
            "messages: you must provide a non-empty array",
        )?;
        if let Some(i) = messages
            .iter()
            .position(|m| m.role != "user" && m.role != "assistant")
        {
            return Err(ApiError::invalid(
                "messages",
                format!("messages.{i}.role: must be \"user\" or \"assistant\""),
            ));
        }
        let Some(requested) = request.max_tokens else {
            return Err(ApiError::invalid(
                "max_tokens",
                "max_tokens: Field required",
            ));
        };
        if requested == 0 {
            return Err(ApiError::invalid(
                "max_tokens",
                "max_tokens: must be at least 1",
            ));
        }
        let max_tokens = resolve_max_tokens(Some(requested), "max_tokens", 0)?;
        let mut parsed = Parsed {
            system: request.system,
            messages,
            max_tokens,
            prompt_tokens: 0,
        };
        parsed.prompt_tokens = parsed.flat().iter().map(|f| count_tokens(f.text)).sum();
        Ok(Call {
            model,
            tier: Tier::Standard,
            estimated_tokens: parsed.prompt_tokens.saturating_add(max_tokens),
            // Anthropic has no `stream_options`: usage always comes.
            stream: (request.stream == Some(true)).then_some(Streaming {
                include_usage: true,
            }),
            request: parsed,
        })
    }

    fn answer(shared: &Shared, body: &[u8], call: Call<Parsed>) -> (Work, MessagesResponse) {
        let Call {
            model,
            tier,
            request: p,
            ..
        } = call;
        let flat = p.flat();
        let conversation = Conversation {
            scope: Scope {
                api: "messages",
                model: &model,
                cache_key: None,
            },
            pieces: flat.iter().map(|f| Piece {
                role: f.role,
                text: f.text,
                boundary: f.breakpoint,
            }),
            prompt_tokens: p.prompt_tokens,
            decode_tokens: p.max_tokens,
            completion_tokens: p.max_tokens,
            bill_cache_writes: true,
        };
        let (work, cache) = conversation.work(shared);

        let answered = answered(p.messages.iter().map(|m| m.role.as_str()));
        let prompt = p
            .messages
            .get(answered)
            .map(|m| m.content.text())
            .unwrap_or_default();
        let response = MessagesResponse {
            id: response_id("msg_", body),
            kind: "message",
            role: "assistant",
            model,
            content: vec![TextBlock {
                kind: "text",
                text: generate(&prompt, p.max_tokens),
            }],
            stop_reason: "max_tokens",
            stop_sequence: None,
            usage: AnthropicUsage {
                input_tokens: p
                    .prompt_tokens
                    .saturating_sub(cache.read_tokens)
                    .saturating_sub(cache.written_tokens),
                output_tokens: p.max_tokens,
                cache_creation_input_tokens: cache.written_tokens,
                cache_read_input_tokens: cache.read_tokens,
                service_tier: match tier {
                    Tier::Batch => "batch",
                    Tier::Standard | Tier::Flex => "standard",
                },
            },
        };
        (work, response)
    }
}

impl Parsed {
    /// The prompt's blocks in order, the system prompt first.
    fn flat(&self) -> Vec<Flat<'_>> {
        let mut flat = Vec::new();
        if let Some(system) = &self.system {
            system.flatten("system", &mut flat);
        }
        for message in &self.messages {
            message.content.flatten(&message.role, &mut flat);
        }
        flat
    }
}
