//! OpenAI-compatible endpoints (`POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`) that enqueue a job and wait for it,
//! so that existing SDKs work unchanged: point their base URL at Sluice and
//! use a Sluice key. The answer is the provider's response body; the job
//! goes through the same queue, batching, limits, budget and ledger. Errors
//! are in OpenAI's shape (`routes::openai`): a provider's refusal with the
//! provider's status and error, Sluice's own refusals with OpenAI's.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sluice_core::{Endpoint, JobError, JobStatus};

use crate::extract::{Caller, JsonBody};
use crate::problem::ApiError;
use crate::read::wait_for_end;
use crate::state::AppState;
use crate::submission::{submit, Outcome, Request};
use crate::trace::trace_id;

/// How long a synchronous call waits for its job before answering 504 (the
/// job goes on; `Sluice-Job-Id` names it for a poll).
pub const SYNC_WAIT: Duration = Duration::from_secs(600);

async fn call(
    state: AppState,
    caller: sluice_store::tenants::Principal,
    headers: HeaderMap,
    endpoint: Endpoint,
    body: Value,
) -> Result<Response, ApiError> {
    let envelope = json!({"endpoint": endpoint.path(), "body": body, "priority": "interactive"});
    let request = Request::one(envelope, trace_id(&headers));
    let id = match submit(&state, &caller, request).await?.into_one().0 {
        Outcome::Answered(record) | Outcome::Queued(record) | Outcome::Replayed(record) => {
            record.id
        }
        Outcome::Refused(e) => return Err(e),
    };
    let job = wait_for_end(&state, &caller.tenant_id, id, SYNC_WAIT).await?;
    let job_header = HeaderValue::from_str(&id.to_string()).unwrap_or(HeaderValue::from_static(""));
    let mut response = match (job.status, job.result) {
        (JobStatus::Succeeded, Some(result)) => (StatusCode::OK, Json(result)).into_response(),
        (JobStatus::Failed, _) => match job.error {
            Some(JobError {
                rejection: Some(rejection),
                ..
            }) => super::openai::rejected(&rejection),
            error => {
                let why = error.map(|e| e.message).unwrap_or_default();
                ApiError::ProviderFailed(format!("job {id} failed: {why}")).into_response()
            }
        },
        (status, _) if !status.is_terminal() => ApiError::SyncTimeout(format!(
            "job {id} is still {status} after {} s; poll GET /v1/jobs/{id}",
            SYNC_WAIT.as_secs()
        ))
        .into_response(),
        (status, _) => ApiError::ProviderFailed(format!("job {id} ended {status}")).into_response(),
    };
    response.headers_mut().insert("sluice-job-id", job_header);
    Ok(response)
}

/// OpenAI's chat completions, through a job (`Sluice-Job-Id` names it).
#[utoipa::path(post, path = "/v1/chat/completions", request_body = Object,
    responses((status = 200, body = Object, description = "The provider's answer"),
              (status = 404, body = super::openai::OpenAiError), (status = 429, body = super::openai::OpenAiError),
              (status = 502, body = super::openai::OpenAiError), (status = 504, body = super::openai::OpenAiError)),
    security(("bearer" = [])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    call(state, caller, headers, Endpoint::ChatCompletions, body).await
}

/// OpenAI's completions, through a job.
#[utoipa::path(post, path = "/v1/completions", request_body = Object,
    responses((status = 200, body = Object, description = "The provider's answer"),
              (status = 404, body = super::openai::OpenAiError), (status = 429, body = super::openai::OpenAiError),
              (status = 502, body = super::openai::OpenAiError), (status = 504, body = super::openai::OpenAiError)),
    security(("bearer" = [])))]
pub async fn completions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    call(state, caller, headers, Endpoint::Completions, body).await
}

/// OpenAI's embeddings, through a job.
#[utoipa::path(post, path = "/v1/embeddings", request_body = Object,
    responses((status = 200, body = Object, description = "The provider's answer"),
              (status = 404, body = super::openai::OpenAiError), (status = 429, body = super::openai::OpenAiError),
              (status = 502, body = super::openai::OpenAiError), (status = 504, body = super::openai::OpenAiError)),
    security(("bearer" = [])))]
pub async fn embeddings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    call(state, caller, headers, Endpoint::Embeddings, body).await
}
