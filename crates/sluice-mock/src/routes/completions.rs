//! `POST /v1/completions`.
//!
//! `prompt` may be an array: a native batch, one request with many
//! prompts. Choices come `n` per prompt in prompt order, with
//! `index = prompt_index * n + j` as OpenAI numbers them, and `usage` is
//! the total over the batch. The batch prefills every prompt but decodes
//! them in parallel (see [`latency`](crate::latency)). Each prompt's
//! leading blocks may come from the prefix cache (see
//! [`prefix`](crate::prefix)), scoped by `prompt_cache_key` when given.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{
    parse_body, reject_stream, require_model, resolve_max_tokens, resolve_n, respond, Completion,
    TextInput, Usage,
};
use crate::error::ApiError;
use crate::latency::Sequence;
use crate::prefix::{text_blocks, Scope};
use crate::state::{Shared, Work};
use crate::text::{count_tokens, generate};

pub(super) const PATH: &str = "/v1/completions";

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<TextInput>,
    max_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    prompt_cache_key: Option<String>,
}

#[derive(Debug, Serialize)]
struct Choice {
    text: String,
    index: u64,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse_body(&body)?;
    let model = require_model(request.model)?;
    reject_stream(request.stream)?;
    let prompts = TextInput::require(request.prompt, "prompt", "you must provide a prompt")?;
    let max_tokens = resolve_max_tokens(
        request.max_tokens,
        "max_tokens",
        shared.options().default_max_tokens,
    )?;
    let n = resolve_n(request.n)?;

    let prompt_tokens = prompts.iter().map(|p| count_tokens(p)).sum::<u64>();
    let prompt_count = prompts.len() as u64;
    let completion_tokens = max_tokens.saturating_mul(n).saturating_mul(prompt_count);

    let admission = shared.admit(&model, prompt_tokens.saturating_add(completion_tokens))?;
    let scope = Scope {
        api: "completions",
        model: &model,
        cache_key: request.prompt_cache_key.as_deref(),
    };
    // In order, so that a prompt can hit the prefix of an earlier one.
    let sequences: Vec<Sequence> = prompts
        .iter()
        .map(|prompt| {
            let boundaries = text_blocks(&shared.options().prefix_cache, scope, prompt);
            Sequence {
                prompt_tokens: count_tokens(prompt),
                cached_tokens: shared.cache_lookup(&boundaries).read_tokens,
                decode_tokens: max_tokens,
            }
        })
        .collect();
    let cached_tokens = sequences.iter().map(|s| s.cached_tokens).sum::<u64>();
    let work = Work {
        prompts: prompt_count,
        sequences,
        completion_tokens,
        cache_write_tokens: 0,
    };
    let receipt = shared.serve(PATH, &model, &admission, &work).await;

    let mut choices = Vec::with_capacity(prompts.len().saturating_mul(n as usize));
    for (prompt_index, prompt) in (0u64..).zip(&prompts) {
        let text = generate(prompt, max_tokens);
        for j in 0..n {
            choices.push(Choice {
                text: text.clone(),
                index: prompt_index * n + j,
                logprobs: None,
                finish_reason: "length",
            });
        }
    }
    let usage = Usage::new(prompt_tokens, completion_tokens, cached_tokens);
    let response = Completion::new("text_completion", "cmpl-", &body, model, choices, usage);
    Ok(respond(receipt, response))
}
