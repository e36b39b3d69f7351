//! `POST /v1/completions`.
//!
//! `prompt` may be an array: a native batch, one request with many
//! prompts. Choices come `n` per prompt in prompt order, with
//! `index = prompt_index * n + j` as OpenAI numbers them, and `usage` is
//! the total over the batch. The batch prefills every prompt but decodes
//! them in parallel (see [`latency`](crate::latency)). Each prompt's
//! leading blocks may come from the prefix cache (see
//! [`prefix`](crate::prefix)), scoped by `prompt_cache_key` when given.
//! `service_tier` may ask for flex (see [`flex`](crate::flex)). With
//! `stream: true` each choice's text comes in chunks (see
//! [`stream`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::call::{Call, ModelRoute};
use super::stream::{self, Script, StreamOptions, StreamedChoice};
use super::{
    parse_body, require_model, resolve_max_tokens, resolve_n, Completion, TextInput, Usage,
};
use crate::error::ApiError;
use crate::flex::requested_tier;
use crate::latency::Sequence;
use crate::prefix::{text_blocks, Scope};
use crate::state::{Shared, Work};
use crate::text::{count_tokens, generate};

pub(crate) const PATH: &str = "/v1/completions";

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<TextInput>,
    max_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    prompt_cache_key: Option<String>,
    service_tier: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    text: String,
    index: u64,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    stream::serve::<Completions, Choice>(&shared, &body).await
}

/// The completions route, for [`ModelRoute`].
pub(crate) struct Completions;

/// A completions request, validated.
pub(crate) struct Parsed {
    prompts: Vec<String>,
    max_tokens: u64,
    n: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cache_key: Option<String>,
}

impl ModelRoute for Completions {
    const PATH: &'static str = PATH;
    type Request = Parsed;
    type Answer = Completion<Choice>;

    fn parse(shared: &Shared, body: &[u8]) -> Result<Call<Parsed>, ApiError> {
        let request: CompletionRequest = parse_body(body)?;
        let model = require_model(request.model)?;
        let stream = stream::requested(request.stream, request.stream_options)?;
        let prompts = TextInput::require(request.prompt, "prompt", "you must provide a prompt")?;
        let max_tokens = resolve_max_tokens(
            request.max_tokens,
            "max_tokens",
            shared.options().default_max_tokens,
        )?;
        let n = resolve_n(request.n)?;
        let tier = requested_tier(request.service_tier.as_deref())?;

        let prompt_tokens = prompts.iter().map(|p| count_tokens(p)).sum::<u64>();
        let prompt_count = prompts.len() as u64;
        let completion_tokens = max_tokens.saturating_mul(n).saturating_mul(prompt_count);
        Ok(Call {
            model,
            tier,
            estimated_tokens: prompt_tokens.saturating_add(completion_tokens),
            stream,
            request: Parsed {
                prompts,
                max_tokens,
                n,
                prompt_tokens,
                completion_tokens,
                cache_key: request.prompt_cache_key,
            },
        })
    }

    fn answer(shared: &Shared, body: &[u8], call: Call<Parsed>) -> (Work, Completion<Choice>) {
        let Call {
            model,
            tier,
            request: p,
            ..
        } = call;
        let scope = Scope {
            api: "completions",
            model: &model,
            cache_key: p.cache_key.as_deref(),
        };
        // In order, so that a prompt can hit the prefix of an earlier one.
        let sequences: Vec<Sequence> = p
            .prompts
            .iter()
            .map(|prompt| {
                let boundaries = text_blocks(&shared.options().prefix_cache, scope, prompt);
                Sequence {
                    prompt_tokens: count_tokens(prompt),
                    cached_tokens: shared.cache_lookup(&boundaries).read_tokens,
                    decode_tokens: p.max_tokens,
                }
            })
            .collect();
        let cached_tokens = sequences.iter().map(|s| s.cached_tokens).sum::<u64>();
        let work = Work {
            prompts: p.prompts.len() as u64,
            sequences,
            completion_tokens: p.completion_tokens,
            cache_write_tokens: 0,
        };

        let mut choices = Vec::with_capacity(p.prompts.len().saturating_mul(p.n as usize));
        for (prompt_index, prompt) in (0u64..).zip(&p.prompts) {
            let text = generate(prompt, p.max_tokens);
            for j in 0..p.n {
                choices.push(Choice {
                    text: text.clone(),
                    index: prompt_index * p.n + j,
                    logprobs: None,
                    finish_reason: "length",
                });
            }
        }
        let usage = Usage::new(p.prompt_tokens, p.completion_tokens, cached_tokens);
        let response = Completion::new(
            "text_completion",
            "cmpl-",
            body,
            model,
            choices,
            usage,
            tier,
        );
        (work, response)
    }
}

/// A completions choice streams its text; the last chunk has an empty
/// text and the finish reason.
impl StreamedChoice for Choice {
    const CHUNK_OBJECT: &'static str = "text_completion";

    fn script(self) -> Script {
        Script {
            index: self.index,
            opening: None,
            closing: stream_entry(self.index, "", Some(self.finish_reason)),
            text: self.text,
            piece: |index, text| stream_entry(index, text, None),
        }
    }
}

/// A streamed chunk's choice: `text` of choice `index`.
fn stream_entry(index: u64, text: &str, finish_reason: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "text": text,
        "index": index,
        "logprobs": null,
        "finish_reason": finish_reason,
    })
}
