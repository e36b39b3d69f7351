//! OpenAI-compatible endpoints (`POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`) that enqueue a job and wait for it,
//! so that existing SDKs work unchanged: point their base URL at Sluice and
//! use a Sluice key. The answer is the provider's response body, or with
//! `stream: true` (chat, completions) Server-Sent Events as OpenAI sends
//! them (`crate::sse`); the job goes through the same queue, batching,
//! limits, budget, cache and ledger. Errors
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
use crate::sse::{self, Start};
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
    mut body: Value,
) -> Result<Response, ApiError> {
    let stream = streamed(endpoint, &mut body);
    let envelope = json!({"endpoint": endpoint.path(), "body": body, "priority": "interactive"});
    let mut request = Request::one(envelope, trace_id(&headers));
    if stream.is_some() {
        request = request.streaming();
    }
    let job = match submit(&state, &caller, request).await?.into_one().0 {
        Outcome::Answered(record) => record,
        Outcome::Queued(record) | Outcome::Replayed(record) => {
            let id = record.id;
            match stream {
                Some(asked) => {
                    match sse::start(state, &caller.tenant_id, id, asked, SYNC_WAIT).await? {
                        Start::Streaming(response) => return Ok(response),
                        Start::Ended(job) => *job,
                    }
                }
                None => wait_for_end(&state, &caller.tenant_id, id, SYNC_WAIT).await?,
            }
        }
        Outcome::Refused(e) => return Err(e),
    };
    let id = job.id;
    let job_header = HeaderValue::from_str(&id.to_string()).unwrap_or(HeaderValue::from_static(""));
    let mut response = match (job.status, job.result) {
        (JobStatus::Succeeded, Some(result)) => match stream {
            Some(asked) => sse::replay(id, &result, asked),
            None => (StatusCode::OK, Json(result)).into_response(),
        },
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

/// Whether the caller asked for a stream (`stream: true` on chat or
/// completions), and how; `stream` and `stream_options` are taken out of
/// the body: the job's message says it streams, and the worker asks the
/// provider for what it needs. Embeddings do not stream: their `stream`
/// stays for validation to refuse.
fn streamed(endpoint: Endpoint, body: &mut Value) -> Option<sse::Asked> {
    if !sluice_core::stream::streams(endpoint) {
        return None;
    }
    let map = body.as_object_mut()?;
    let options = map.remove("stream_options");
    match map.remove("stream") {
        Some(Value::Bool(true)) => Some(sse::Asked {
            endpoint,
            include_usage: options
                .as_ref()
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }),
        Some(Value::Bool(false)) | None => None,
        Some(other) => {
            // Not a boolean: left for validation to refuse.
            map.insert("stream".into(), other);
            None
        }
    }
}

/// OpenAI's chat completions, through a job (`Sluice-Job-Id` names it).
#[utoipa::path(post, path = "/v1/chat/completions", request_body = Object,
    responses((status = 200, description = "The provider's answer; with `stream: true`, Server-Sent Events as OpenAI sends them, ending `data: [DONE]`",
               content((Object = "application/json"), (String = "text/event-stream"))),
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
    responses((status = 200, description = "The provider's answer; with `stream: true`, Server-Sent Events as OpenAI sends them, ending `data: [DONE]`",
               content((Object = "application/json"), (String = "text/event-stream"))),
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
