//! `POST /v1/chat/completions`.
//!
//! The answer is generated from the content of the last `user` message: as
//! text, as a JSON object when `response_format` asks for JSON, or as a call
//! of a tool when `tool_choice` forces one (`required`: the first tool; or
//! the named function), with the text as its `input` argument;
//! `prompt_tokens` counts the content of every message. The messages
//! before the answered one are the cacheable prefix (see
//! [`prefix`](crate::prefix)), scoped by `prompt_cache_key` when given.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::conversation::{answered, require_messages, Conversation};
use super::{
    parse_body, reject_stream, require_model, resolve_max_tokens, resolve_n, respond, response_id,
    Completion, Usage,
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
    #[serde(default)]
    tools: Vec<Tool>,
    tool_choice: Option<serde_json::Value>,
    response_format: Option<ResponseFormat>,
}

#[derive(Debug, Deserialize)]
struct Tool {
    function: ToolFunction,
}

#[derive(Debug, Deserialize)]
struct ToolFunction {
    name: String,
}

#[derive(Debug, Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
}

/// The tool a request forces a call of, if any.
fn forced_tool(
    tools: &[Tool],
    choice: Option<&serde_json::Value>,
) -> Result<Option<String>, ApiError> {
    let named = match choice {
        None => return Ok(None),
        Some(serde_json::Value::String(mode)) => match mode.as_str() {
            "required" => tools.first().map(|t| t.function.name.clone()),
            "none" | "auto" => return Ok(None),
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice {other:?} is not none, auto or required"),
                ))
            }
        },
        Some(choice) => choice
            .pointer("/function/name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    };
    match named {
        Some(name) if tools.iter().any(|t| t.function.name == name) => Ok(Some(name)),
        Some(name) => Err(ApiError::invalid(
            "tool_choice",
            format!("tool_choice names {name:?}, which is not among the tools"),
        )),
        None => Err(ApiError::invalid(
            "tool_choice",
            "tool_choice requires a tool, and none was given",
        )),
    }
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
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<serde_json::Value>>,
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
    let tool = forced_tool(&request.tools, request.tool_choice.as_ref())?;
    let json_answer = request
        .response_format
        .as_ref()
        .is_some_and(|f| f.kind == "json_object" || f.kind == "json_schema");

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
        .map(|index| match &tool {
            Some(name) => Choice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: None,
                    tool_calls: Some(vec![serde_json::json!({
                        "id": format!("{}_{index}", response_id("call_", &body)),
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": serde_json::json!({"input": content}).to_string(),
                        },
                    })]),
                },
                logprobs: None,
                finish_reason: "tool_calls",
            },
            None => Choice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: Some(if json_answer {
                        serde_json::json!({"answer": content}).to_string()
                    } else {
                        content.clone()
                    }),
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: "length",
            },
        })
        .collect();
    let usage = Usage::new(prompt_tokens, completion_tokens, cached.read_tokens);
    let response = Completion::new("chat.completion", "chatcmpl-", &body, model, choices, usage);
    Ok(respond(receipt, response))
}
