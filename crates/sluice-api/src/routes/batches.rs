//! OpenAI's Batch API: `POST /v1/batches`, `GET /v1/batches`,
//! `GET /v1/batches/{id}` and `POST /v1/batches/{id}/cancel`, with OpenAI's
//! object shapes and errors. A batch runs its input file (uploaded with
//! `POST /v1/files`) line by line through Sluice's own path (`crate::batches`
//! drives it); these handlers create, show and cancel. A batch is its
//! tenant's (another's is a 404). Its object shows, as Sluice's extension,
//! the cost of its lines from the usage ledger (`cost_micros`, and
//! `estimated_micros` for calls a crash repeated).

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::Endpoint;
use sluice_store::batches::{Batch, BatchStatus, NewBatch};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Caller, JsonBody};
use crate::problem::ApiError;
use crate::state::AppState;

/// The only completion window (OpenAI's); it lasts `[batches] window_s`.
const WINDOW: &str = "24h";
/// Most batches one list answers (OpenAI's limit), and its default.
const MAX_LIST: usize = 100;
const DEFAULT_LIST: usize = 20;
/// Most metadata pairs (OpenAI's limit).
const MAX_METADATA: usize = 16;

/// What `POST /v1/batches` takes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateBatch {
    /// A file uploaded with purpose `batch`: one request per line.
    pub input_file_id: String,
    /// `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`; every
    /// line's `url` must be this.
    pub endpoint: String,
    /// `24h`.
    pub completion_window: String,
    /// Up to 16 string pairs, returned with the batch.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A batch, as OpenAI's Batch API shows one, with its cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchObject {
    pub id: String,
    pub object: &'static str,
    pub endpoint: String,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    /// validating, failed, in_progress, finalizing, completed, expired,
    /// cancelling or cancelled.
    pub status: &'static str,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Unix seconds, as every time below.
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The tokens of its lines' provider calls so far (cache hits: none).
    pub usage: BatchUsage,
    /// Sluice's extension: what the provider billed for its lines so far,
    /// µ$ (the exact part), from the usage ledger.
    pub cost_micros: u64,
    /// Sluice's extension: the estimated part, µ$ (calls a crash repeated).
    pub estimated_micros: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchErrors {
    pub object: &'static str,
    pub data: Vec<BatchError>,
}

/// Why a batch failed: one bad line (1-based), or the whole file.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub object: &'static str,
    pub data: Vec<BatchObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only batches older than this one (newest first).
    pub after: Option<String>,
    /// Most batches to answer, 1 to 100 (default 20).
    pub limit: Option<usize>,
}

fn unix(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|at| at.timestamp())
}

/// `batch`'s object, with its usage so far from the ledger.
async fn object(state: &AppState, batch: Batch) -> Result<BatchObject, ApiError> {
    let usage = state.usage.batch_usage(&batch.tenant_id, &batch.id).await?;
    let errors = (!batch.errors.is_empty()).then(|| BatchErrors {
        object: "list",
        data: batch
            .errors
            .into_iter()
            .map(|e| BatchError {
                code: e.code,
                message: e.message,
                param: e.param,
                line: e.line,
            })
            .collect(),
    });
    Ok(BatchObject {
        object: "batch",
        status: batch.status.as_str(),
        created_at: batch.created_at.timestamp(),
        in_progress_at: unix(batch.in_progress_at),
        expires_at: Some(batch.expires_at.timestamp()),
        finalizing_at: unix(batch.finalizing_at),
        completed_at: unix(batch.completed_at),
        failed_at: unix(batch.failed_at),
        expired_at: unix(batch.expired_at),
        cancelling_at: unix(batch.cancelling_at),
        cancelled_at: unix(batch.cancelled_at),
        request_counts: RequestCounts {
            total: batch.total,
            completed: batch.completed,
            failed: batch.failed,
        },
        usage: BatchUsage {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: usage.cached_tokens,
            },
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: 0,
            },
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
        },
        cost_micros: usage.cost_micros,
        estimated_micros: usage.estimated_micros,
        id: batch.id,
        endpoint: batch.endpoint,
        errors,
        input_file_id: batch.input_file_id,
        completion_window: batch.completion_window,
        output_file_id: batch.output_file_id,
        error_file_id: batch.error_file_id,
        metadata: batch.metadata,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::BatchNotFound(format!("No such Batch object: {id}"))
}

/// Metadata as OpenAI takes it: up to 16 pairs of strings.
fn check_metadata(metadata: &Option<Value>) -> Result<(), ApiError> {
    let pairs = match metadata {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(pairs)) => pairs,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "`metadata` must be an object of strings".into(),
            ))
        }
    };
    if pairs.len() > MAX_METADATA || pairs.values().any(|v| !v.is_string()) {
        return Err(ApiError::InvalidRequest(format!(
            "`metadata` holds at most {MAX_METADATA} pairs, each value a string"
        )));
    }
    Ok(())
}

/// Creates a batch from an uploaded file. It starts `validating`; its
/// lines run once every line is checked.
#[utoipa::path(post, path = "/v1/batches", request_body = CreateBatch,
    responses((status = 200, body = BatchObject),
              (status = 400, body = super::openai::OpenAiError, description = "Not a batch request: endpoint, window or metadata"),
              (status = 404, body = super::openai::OpenAiError, description = "No such input file for this tenant"),
              (status = 429, body = super::openai::OpenAiError, description = "The tenant's monthly budget is spent")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<BatchObject>, ApiError> {
    let request: CreateBatch = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidRequest(format!("the batch request is not valid: {e}")))?;
    request
        .endpoint
        .parse::<Endpoint>()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if request.completion_window != WINDOW {
        return Err(ApiError::InvalidRequest(format!(
            "completion_window must be {WINDOW:?} (got {:?})",
            request.completion_window
        )));
    }
    check_metadata(&request.metadata)?;
    let now = Utc::now();
    let file = state
        .files
        .get(&caller.tenant_id, &request.input_file_id, now)
        .await?
        .ok_or_else(|| {
            ApiError::FileNotFound(format!("No such File object: {}", request.input_file_id))
        })?;
    if file.purpose != "batch" {
        return Err(ApiError::InvalidRequest(format!(
            "file {} has purpose {:?}; a batch's input has purpose \"batch\"",
            file.id, file.purpose
        )));
    }
    crate::submission::budget::check(&state, &caller).await?;
    let batch = Batch::new(NewBatch {
        tenant_id: caller.tenant_id.clone(),
        tenant_name: caller.tenant_name.clone(),
        key_id: caller.key_id.clone(),
        input_file_id: request.input_file_id,
        endpoint: request.endpoint,
        completion_window: request.completion_window,
        metadata: request.metadata.filter(|m| !m.is_null()),
        created_at: now,
        expires_at: now
            + chrono::Duration::seconds(
                i64::try_from(state.config.batches.window_s).unwrap_or(i64::MAX),
            ),
    });
    state.batches.create(&batch).await?;
    Ok(Json(object(&state, batch).await?))
}

/// The caller's batches, newest first.
#[utoipa::path(get, path = "/v1/batches", params(ListParams),
    responses((status = 200, body = BatchList),
              (status = 400, body = super::openai::OpenAiError, description = "A bad `limit`")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BatchList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be 1 to {MAX_LIST} (got {limit})"
        )));
    }
    // One more than asked says whether there are more.
    let mut batches = state
        .batches
        .list(&caller.tenant_id, params.after.as_deref(), limit + 1)
        .await?;
    let has_more = batches.len() > limit;
    batches.truncate(limit);
    let data =
        futures::future::try_join_all(batches.into_iter().map(|b| object(&state, b))).await?;
    Ok(Json(BatchList {
        object: "list",
        first_id: data.first().map(|b| b.id.clone()),
        last_id: data.last().map(|b| b.id.clone()),
        data,
        has_more,
    }))
}

/// One of the caller's batches, with its live counts and cost.
#[utoipa::path(get, path = "/v1/batches/{id}", params(("id" = String, Path)),
    responses((status = 200, body = BatchObject),
              (status = 404, body = super::openai::OpenAiError, description = "No such batch for this tenant")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, ApiError> {
    match state.batches.get(&caller.tenant_id, &id).await? {
        Some(batch) => Ok(Json(object(&state, batch).await?)),
        None => Err(not_found(&id)),
    }
}

/// Cancels a batch: `cancelling` at once, `cancelled` once its lines
/// still queued are canceled and those running have ended; what finished
/// stays in its output file.
#[utoipa::path(post, path = "/v1/batches/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = BatchObject),
              (status = 404, body = super::openai::OpenAiError, description = "No such batch for this tenant"),
              (status = 409, body = super::openai::OpenAiError, description = "The batch has ended")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, ApiError> {
    let Some(batch) = state
        .batches
        .cancel(&caller.tenant_id, &id, Utc::now())
        .await?
    else {
        return Err(not_found(&id));
    };
    if !matches!(
        batch.status,
        BatchStatus::Cancelling | BatchStatus::Cancelled
    ) {
        return Err(ApiError::NotCancelable(format!(
            "batch {id} is {}; only a batch validating or in progress can be cancelled",
            batch.status.as_str()
        )));
    }
    Ok(Json(object(&state, batch).await?))
}
