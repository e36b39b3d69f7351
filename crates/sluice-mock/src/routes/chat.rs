//! `POST /v1/chat/completions`.
//!
//! The answer is generated from the content of the last `user` message: as
//! text, as a JSON object when `response_format` asks for JSON, or as a call
//! of a tool when `tool_choice` forces one (`required`: the first tool; or
//! the named function), with the text as its `input` argument;
//! `prompt_tokens` counts the content of every message. The messages
//! before the answered one are the cacheable prefix (see
//! [`prefix`](crate::prefix)), scoped by `prompt_cache_key` when given.
//! `service_tier` may ask for flex (see [`flex`](crate::flex)). With
//! `stream: true` the answer comes in chunks (see
//! [`stream`]): the role, then the content (or the tool
//! call's arguments) a token at a time, then the finish reason.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::call::{Call, ModelRoute};
use super::conversation::{answered, require_messages, Conversation};
use super::stream::{self, Script, StreamOptions, StreamedChoice};
use super::{
    parse_body, require_model, resolve_max_tokens, resolve_n, response_id, Completion, Usage,
};
use crate::error::ApiError;
use crate::flex::requested_tier;
use crate::prefix::{Piece, Scope};
use crate::state::{Shared, Work};
use crate::text::{count_tokens, generate};

pub(crate) const PATH: &str = "/v1/chat/completions";

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    prompt_cache_key: Option<String>,
    #[serde(default)]
    tools: Vec<Tool>,
    tool_choice: Option<serde_json::Value>,
    response_format: Option<ResponseFormat>,
    service_tier: Option<String>,
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
pub(crate) struct Choice {
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
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall,
}

#[derive(Debug, Serialize)]
struct FunctionCall {
    name: String,
    arguments: String,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    stream::serve::<Chat, Choice>(&shared, &body).await
}

/// The chat route, for [`ModelRoute`].
pub(crate) struct Chat;

/// A chat request, validated.
pub(crate) struct Parsed {
    messages: Vec<Message>,
    texts: Vec<String>,
    /// The index of the message answered.
    answered: usize,
    prompt_tokens: u64,
    max_tokens: u64,
    n: u64,
    tool: Option<String>,
    json_answer: bool,
    cache_key: Option<String>,
}

impl ModelRoute for Chat {
    const PATH: &'static str = PATH;
    type Request = Parsed;
    type Answer = Completion<Choice>;

    fn parse(shared: &Shared, body: &[u8]) -> Result<Call<Parsed>, ApiError> {
        let request: ChatRequest = parse_body(body)?;
        let model = require_model(request.model)?;
        let stream = stream::requested(request.stream, request.stream_options)?;
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
        let tier = requested_tier(request.service_tier.as_deref())?;

        let texts: Vec<String> = messages.iter().map(Message::text).collect();
        let answered = answered(messages.iter().map(|message| message.role.as_str()));
        let prompt_tokens = texts.iter().map(|text| count_tokens(text)).sum::<u64>();
        Ok(Call {
            model,
            tier,
            estimated_tokens: prompt_tokens.saturating_add(max_tokens.saturating_mul(n)),
            stream,
            request: Parsed {
                messages,
                texts,
                answered,
                prompt_tokens,
                max_tokens,
                n,
                tool,
                json_answer,
                cache_key: request.prompt_cache_key,
            },
        })
    }

    fn answer(shared: &Shared, body: &[u8], call: Call<Parsed>) -> (Work, Completion<Choice>) {
        let Call {
            model,
            tier,
            request: chat,
            ..
        } = call;
        let completion_tokens = chat.max_tokens.saturating_mul(chat.n);
        let conversation = Conversation {
            scope: Scope {
                api: "chat",
                model: &model,
                cache_key: chat.cache_key.as_deref(),
            },
            pieces: chat
                .messages
                .iter()
                .zip(&chat.texts)
                .take(chat.answered)
                .map(|(message, text)| Piece {
                    role: &message.role,
                    text,
                    boundary: true,
                }),
            prompt_tokens: chat.prompt_tokens,
            decode_tokens: chat.max_tokens,
            completion_tokens,
            bill_cache_writes: false,
        };
        let (work, cached) = conversation.work(shared);

        let prompt = chat
            .texts
            .get(chat.answered)
            .map(String::as_str)
            .unwrap_or_default();
        let content = generate(prompt, chat.max_tokens);
        let choices = (0..chat.n)
            .map(|index| choice(index, body, &chat, &content))
            .collect();
        let usage = Usage::new(chat.prompt_tokens, completion_tokens, cached.read_tokens);
        let response = Completion::new(
            "chat.completion",
            "chatcmpl-",
            body,
            model,
            choices,
            usage,
            tier,
        );
        (work, response)
    }
}

/// Choice `index` of the answer `content`: the text (or JSON), or a call of
/// the forced tool.
fn choice(index: u64, body: &[u8], chat: &Parsed, content: &str) -> Choice {
    match &chat.tool {
        Some(name) => Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content: None,
                tool_calls: Some(vec![ToolCall {
                    id: format!("{}_{index}", response_id("call_", body)),
                    kind: "function",
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: serde_json::json!({"input": content}).to_string(),
                    },
                }]),
            },
            logprobs: None,
            finish_reason: "tool_calls",
        },
        None => Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content: Some(if chat.json_answer {
                    serde_json::json!({"answer": content}).to_string()
                } else {
                    content.to_owned()
                }),
                tool_calls: None,
            },
            logprobs: None,
            finish_reason: "length",
        },
    }
}

/// A chat choice streams as OpenAI streams it: a first delta with the role
/// (and an empty content, or the tool call's id and name with empty
/// arguments), then the content (or the arguments) a piece a delta, then an
/// empty delta with the finish reason.
impl StreamedChoice for Choice {
    const CHUNK_OBJECT: &'static str = "chat.completion.chunk";

    fn script(self) -> Script {
        let index = self.index;
        let closing = stream_entry(index, serde_json::json!({}), Some(self.finish_reason));
        let message = self.message;
        match message
            .tool_calls
            .and_then(|calls| calls.into_iter().next())
        {
            Some(call) => Script {
                index,
                opening: Some(stream_entry(
                    index,
                    serde_json::json!({
                        "role": message.role,
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": call.id,
                            "type": call.kind,
                            "function": {"name": call.function.name, "arguments": ""},
                        }],
                    }),
                    None,
                )),
                text: call.function.arguments,
                piece: |index, piece| {
                    let delta = serde_json::json!({
                        "tool_calls": [{"index": 0, "function": {"arguments": piece}}],
                    });
                    stream_entry(index, delta, None)
                },
                closing,
            },
            None => Script {
                index,
                opening: Some(stream_entry(
                    index,
                    serde_json::json!({"role": message.role, "content": ""}),
                    None,
                )),
                text: message.content.unwrap_or_default(),
                piece: |index, piece| {
                    stream_entry(index, serde_json::json!({"content": piece}), None)
                },
                closing,
            },
        }
    }
}

/// A streamed chunk's choice: `delta` of choice `index`.
fn stream_entry(
    index: u64,
    delta: serde_json::Value,
    finish_reason: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "index": index,
        "delta": delta,
        "logprobs": null,
        "finish_reason": finish_reason,
    })
}
