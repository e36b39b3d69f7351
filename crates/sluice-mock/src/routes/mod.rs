//! The HTTP surface: one module per endpoint, plus what they share
//! (body parsing, validation, ids; answering a model route, `call`;
//! streaming an answer, `stream`). The files and batches routes are in
//! [`batches`](crate::batches).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth;
use crate::error::{ApiError, Dialect};
use crate::flex::echoed;
use crate::pricing::Tier;
use crate::state::{Receipt, Shared};

mod admin;
pub(crate) mod call;
mod chat;
mod completions;
mod conversation;
pub(crate) mod costs;
mod down;
mod embeddings;
pub(crate) mod messages;
mod messages_stream;
mod stream;

/// Largest request body accepted. Benchmarks send batches of hundreds of
/// prompts in one call, well past axum's 2 MiB default.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Largest `max_tokens` accepted. The mock really writes that much text
/// (four bytes a token), so this bounds one answer to 4 MiB.
const MAX_TOKENS_LIMIT: u64 = 1 << 20;

/// Largest `n` (choices per prompt) accepted, as OpenAI does.
const MAX_CHOICES: u64 = 128;

/// Largest embedding `dimensions` accepted; larger than any real model's.
const MAX_EMBEDDING_DIMS: usize = 65_536;

/// Every route of the mock, sharing `shared`. On each `/v1` route the key
/// is checked first (401), then the down switch (503), then the request
/// itself (400), then (on the model routes) flex capacity and the rate
/// limits (429) and fault injection (5xx).
pub(crate) fn router(shared: Shared) -> Router {
    let openai = Router::new()
        .route(chat::PATH, post(chat::handle))
        .route(completions::PATH, post(completions::handle))
        .route(embeddings::PATH, post(embeddings::handle));
    let anthropic = Router::new().route(messages::PATH, post(messages::handle));
    let openai_batches = {
        use crate::batches::{files, openai};
        Router::new()
            .route(files::PATH, post(files::upload).get(files::list))
            .route(files::ONE_PATH, get(files::get).delete(files::delete))
            .route(files::CONTENT_PATH, get(files::content))
            .route(openai::PATH, post(openai::create).get(openai::list))
            .route(openai::ONE_PATH, get(openai::get))
            .route(openai::CANCEL_PATH, post(openai::cancel))
    };
    let anthropic_batches = {
        use crate::batches::anthropic;
        Router::new()
            .route(
                anthropic::PATH,
                post(anthropic::create).get(anthropic::list),
            )
            .route(
                anthropic::ONE_PATH,
                get(anthropic::get).delete(anthropic::delete),
            )
            .route(anthropic::CANCEL_PATH, post(anthropic::cancel))
            .route(anthropic::RESULTS_PATH, get(anthropic::results))
    };
    let control = Router::new()
        .route(admin::STATS_PATH, get(admin::stats))
        .route(admin::RESET_PATH, post(admin::reset))
        .route(admin::BILL_PATH, get(admin::bill))
        .route(admin::TRACES_PATH, get(admin::traces))
        .route(admin::RECEIVED_PATH, get(admin::received))
        .route(admin::DOWN_PATH, post(admin::down))
        .route(admin::UP_PATH, post(admin::up))
        .route(costs::PATH, get(costs::handle))
        .route_layer(middleware::from_fn_with_state(
            (shared.clone(), Dialect::OpenAi),
            auth::require_key,
        ));
    Router::new()
        .merge(model_routes(openai, &shared, Dialect::OpenAi))
        .merge(model_routes(anthropic, &shared, Dialect::Anthropic))
        .merge(batch_routes(openai_batches, &shared, Dialect::OpenAi))
        .merge(batch_routes(anthropic_batches, &shared, Dialect::Anthropic))
        .merge(control)
        .route("/healthz", get(|| async { "ok" }))
        .fallback(unknown_url)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// `routes`, the model routes of `dialect`, behind (outermost first) the
/// key check, the trace log and the down switch.
fn model_routes(routes: Router<Shared>, shared: &Shared, dialect: Dialect) -> Router<Shared> {
    let state = (shared.clone(), dialect);
    routes
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            down::refuse_while_down,
        ))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::traces::record,
        ))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::received::record,
        ))
        .route_layer(middleware::from_fn_with_state(state, auth::require_key))
}

/// `routes`, the file and batch routes of `dialect`, behind (outermost
/// first) the key check and the down switch; the trace and request logs
/// are for model calls only.
fn batch_routes(routes: Router<Shared>, shared: &Shared, dialect: Dialect) -> Router<Shared> {
    let state = (shared.clone(), dialect);
    routes
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            down::refuse_while_down,
        ))
        .route_layer(middleware::from_fn_with_state(state, auth::require_key))
}

async fn unknown_url(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_url(method.as_str(), uri.path())
}

/// Parses a JSON body. Done by hand rather than with axum's `Json`
/// extractor, so every parse failure is a 400 in the OpenAI shape (axum
/// would answer 415 or 422 in plain text).
pub(crate) fn parse_body<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::unparsable(&err))
}

/// The `model`, which every endpoint requires.
pub(crate) fn require_model(model: Option<String>) -> Result<String, ApiError> {
    match model {
        Some(model) if !model.trim().is_empty() => Ok(model),
        _ => Err(ApiError::invalid(
            "model",
            "you must provide a model parameter",
        )),
    }
}

/// Completion tokens per choice: the request's limit, else the default.
pub(crate) fn resolve_max_tokens(
    requested: Option<u64>,
    param: &str,
    default: u64,
) -> Result<u64, ApiError> {
    let max_tokens = requested.unwrap_or(default);
    if max_tokens > MAX_TOKENS_LIMIT {
        return Err(ApiError::invalid(
            param,
            format!("{param} is {max_tokens}; the mock allows at most {MAX_TOKENS_LIMIT}"),
        ));
    }
    Ok(max_tokens)
}

/// Choices per prompt (`n`), 1 by default.
pub(crate) fn resolve_n(n: Option<u64>) -> Result<u64, ApiError> {
    match n.unwrap_or(1) {
        n @ 1..=MAX_CHOICES => Ok(n),
        n => Err(ApiError::invalid(
            "n",
            format!("n is {n}; it must be between 1 and {MAX_CHOICES}"),
        )),
    }
}

/// Embedding length: the request's `dimensions`, else the default.
pub(crate) fn resolve_dims(requested: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match requested.unwrap_or(default) {
        dims @ 1..=MAX_EMBEDDING_DIMS => Ok(dims),
        dims => Err(ApiError::invalid(
            "dimensions",
            format!("dimensions is {dims}; it must be between 1 and {MAX_EMBEDDING_DIMS}"),
        )),
    }
}

/// `prompt` or `input`: one string, an array of strings, a list of token
/// ids, or an array of token-id lists.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum TextInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

/// The text the mock reads for a list of token ids: one four-character
/// word per id, so that it counts as exactly as many tokens
/// ([`crate::text::count_tokens`]), and different ids read differently.
fn token_text(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("{:04x}", id % 0x1_0000))
        .collect()
}

impl TextInput {
    /// The texts of `input`, the request's `param`; a 400 saying `missing`
    /// when it is absent, or when it is an empty array.
    pub(crate) fn require(
        input: Option<TextInput>,
        param: &str,
        missing: &str,
    ) -> Result<Vec<String>, ApiError> {
        let empty = || ApiError::invalid(param, format!("{param} must not be an empty array"));
        match input {
            None => Err(ApiError::invalid(param, missing)),
            Some(TextInput::One(text)) => Ok(vec![text]),
            Some(TextInput::Many(texts)) if texts.is_empty() => Err(empty()),
            Some(TextInput::Many(texts)) => Ok(texts),
            Some(TextInput::Tokens(ids)) => Ok(vec![token_text(&ids)]),
            Some(TextInput::ManyTokens(lists)) if lists.iter().any(Vec::is_empty) => Err(empty()),
            Some(TextInput::ManyTokens(lists)) => {
                Ok(lists.iter().map(|ids| token_text(ids)).collect())
            }
        }
    }
}

/// An OpenAI completion answer, chat (`C` a chat choice) or text.
#[derive(Debug, Serialize)]
pub(crate) struct Completion<C> {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<C>,
    usage: Usage,
    service_tier: &'static str,
}

impl<C> Completion<C> {
    /// The answer to `body`, an `object` whose id starts with `id_prefix`,
    /// served on `tier`.
    pub(crate) fn new(
        object: &'static str,
        id_prefix: &str,
        body: &[u8],
        model: String,
        choices: Vec<C>,
        usage: Usage,
        tier: Tier,
    ) -> Self {
        Self {
            id: response_id(id_prefix, body),
            object,
            created: unix_now(),
            model,
            choices,
            usage,
            service_tier: echoed(tier),
        }
    }
}

/// Token usage, as OpenAI reports it. `prompt_tokens` includes the
/// cached ones.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens read from the prefix cache.
    pub(crate) cached_tokens: u64,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64, cached_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// A 200 with `body` and the receipt's headers (cost, rate limits).
pub(crate) fn respond<T: Serialize>(receipt: Receipt, body: T) -> Response {
    (receipt.headers, Json(body)).into_response()
}

/// A response id that is a function of the request body, so the same
/// request gets the same id (and different requests different ones).
pub(crate) fn response_id(prefix: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{prefix}{}", digest.get(..24).unwrap_or(&digest))
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}
