//! Job handlers: submit (one or a batch), read (poll or long-poll), cancel.
//! Submissions go through the pipeline (`submission`); these parse the
//! request and shape the answer.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use sluice_core::job::CancelOutcome;
use sluice_core::{JobId, JobRecord};
use utoipa::IntoParams;

use crate::extract::{Caller, JsonBody};
use crate::problem::{ApiError, Problem, RateLimitHeaders};
use crate::read::{own_job, wait_for_end};
use crate::state::AppState;
use crate::submission::validate::BatchRequest;
use crate::submission::{submit as run, IdempotencyKey, Outcome, Request};
use crate::trace::trace_id;
use crate::view::{BatchEntry, BatchView, JobView};

fn job_response(
    status: StatusCode,
    record: JobRecord,
    limit: Option<RateLimitHeaders>,
) -> Response {
    let location = JobView::location(&record.id);
    let mut response = (
        status,
        [(header::LOCATION, location)],
        Json(JobView::from(record)),
    )
        .into_response();
    if let Some(limit) = limit {
        limit.apply(response.headers_mut());
    }
    response
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs", request_body = crate::submission::validate::JobRequest,
    responses((status = 202, body = JobView, description = "Accepted: the broker confirmed the job"),
              (status = 200, body = JobView, description = "Answered from the cache, or the job an earlier request with this Idempotency-Key made"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 402, body = Problem),
              (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem),
              (status = 429, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let request = Request::one(raw, trace_id(&headers))
        .with_idempotency(IdempotencyKey::from_headers(&headers)?);
    let (outcome, limit) = run(&state, &caller, request).await?.into_one();
    match outcome {
        Outcome::Answered(record) => Ok(job_response(StatusCode::OK, record, None)),
        Outcome::Queued(record) => Ok(job_response(StatusCode::ACCEPTED, record, limit)),
        Outcome::Replayed(record) => {
            let mut response = job_response(StatusCode::OK, record, None);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        Outcome::Refused(e) => Err(e),
    }
}

/// Submit up to `max_batch_jobs` jobs at once.
#[utoipa::path(post, path = "/v1/jobs/batch", request_body = BatchRequest,
    responses((status = 202, body = BatchView, description = "Each entry is the job, or why it was not enqueued"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 402, body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem),
              (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit_batch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let request: BatchRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::InvalidRequest(format!("expected {{\"jobs\": [...]}}: {e}")))?;
    let submitted = run(
        &state,
        &caller,
        Request::batch(request.jobs, trace_id(&headers)),
    )
    .await?;
    let mut refusals = 0;
    let mut jobs = Vec::with_capacity(submitted.outcomes.len());
    let mut first_refusal = None;
    for outcome in submitted.outcomes {
        jobs.push(match outcome {
            Outcome::Answered(record) | Outcome::Queued(record) | Outcome::Replayed(record) => {
                BatchEntry::Job(Box::new(JobView::from(record)))
            }
            Outcome::Refused(e) => {
                refusals += 1;
                let entry = BatchEntry::Error { error: e.problem() };
                first_refusal.get_or_insert(e);
                entry
            }
        });
    }
    if let (Some(e), true) = (first_refusal, refusals == jobs.len()) {
        // Nothing was accepted: the whole request failed, as one job would.
        return Err(e);
    }
    let view = BatchView {
        object: "list",
        jobs,
    };
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Some(limit) = submitted.limit {
        limit.apply(response.headers_mut());
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitQuery {
    /// Seconds to wait for the job to end (long-poll), at most `max_wait_s`.
    pub wait: Option<f64>,
}

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::JobNotFound(id.to_owned()))
}

/// Read a job; with `?wait=`, wait for it to end first.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = JobView), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let id = parse_id(&id)?;
    let max = state.config.api.max_wait_s as f64;
    let wait = match query.wait {
        None => 0.0,
        Some(w) if w.is_finite() && (0.0..=max).contains(&w) => w,
        Some(w) => {
            return Err(ApiError::InvalidRequest(format!(
                "`wait` must be between 0 and {max} seconds (got {w})"
            )))
        }
    };
    let job = wait_for_end(&state, &caller.tenant_id, id, Duration::from_secs_f64(wait)).await?;
    Ok(Json(JobView::from(job)))
}

/// Cancel a queued job, or one waiting in a provider batch; it will never
/// reach a provider (a batch line sent already is answered, and billed,
/// but does not end it).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "The job is already running or finished"),
              (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    own_job(&state, &caller.tenant_id, id).await?;
    match state.store.cancel(id, Utc::now()).await? {
        CancelOutcome::Canceled => {
            let job = own_job(&state, &caller.tenant_id, id).await?;
            // The worker announces it again when it takes the job's message,
            // so a failed publish here loses nothing.
            if let Err(e) = state.events.ended(std::slice::from_ref(&job)).await {
                tracing::warn!(job = %id, error = %e, "cannot announce the cancel now; the worker will");
            }
            Ok(Json(JobView::from(job)))
        }
        CancelOutcome::NotCancelable(status) => Err(ApiError::NotCancelable(format!(
            "job {id} is {status}; only queued jobs, and jobs waiting in a provider batch, can be canceled"
        ))),
        CancelOutcome::NotFound => Err(ApiError::JobNotFound(id.to_string())),
    }
}
