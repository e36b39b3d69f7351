//! Job handlers: submit (one or a batch), read (poll or long-poll), cancel.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use sluice_core::batching::request_tokens;
use sluice_core::job::{CancelOutcome, Outcome};
use sluice_core::{JobError, JobId, JobRecord};
use sluice_queue::Outgoing;
use sluice_store::jobs::{get_current, IdempotencyClaim};
use sluice_store::tenants::Principal;
use utoipa::IntoParams;

use crate::cache::{self, Joined};
use crate::extract::{Caller, JsonBody};
use crate::problem::{ApiError, Problem, RateLimitHeaders};
use crate::submit::{check, Accepted};
use crate::view::{BatchEntry, BatchView, JobView};
use crate::AppState;
use crate::{budget, limits};

/// A long-poll re-reads its job at least this often, in case a completion
/// message was lost.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn trace_id(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|t| t.len() == 32)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Stores the records, publishes the messages, and waits for the broker's
/// confirms. A job whose publish was not confirmed is marked failed
/// (`enqueue_failed`) and reported as an error, never left looking queued.
pub(crate) async fn enqueue(
    state: &AppState,
    accepted: Vec<Accepted>,
) -> Result<Vec<Result<JobRecord, ApiError>>, ApiError> {
    let records: Vec<JobRecord> = accepted.iter().map(|a| a.record.clone()).collect();
    // A message that cannot be encoded is refused before anything is stored.
    let outgoing = accepted
        .iter()
        .map(|a| {
            Ok(Outgoing {
                priority: a.message.priority,
                body: a.message.encode()?.into(),
                headers: a.headers(),
            })
        })
        .collect::<Result<Vec<Outgoing>, serde_json::Error>>()
        .map_err(|e| ApiError::InvalidRequest(format!("the job cannot be encoded: {e}")))?;
    let confirms = state
        .ingest
        .submit(records.clone(), outgoing)
        .await
        .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
    let mut results = Vec::with_capacity(records.len());
    for (record, confirm) in records.into_iter().zip(confirms) {
        match confirm {
            Ok(()) => {
                state
                    .metrics
                    .jobs_submitted
                    .with_label_values(&[record.priority.as_str()])
                    .inc();
                results.push(Ok(record));
            }
            Err(e) => {
                let failed = Outcome::Failed(JobError::new("enqueue_failed", e.to_string()));
                if let Err(store_error) = state.store.finish(record.id, &failed, Utc::now()).await {
                    tracing::warn!(job = %record.id, error = %store_error, "cannot mark unconfirmed job failed");
                }
                results.push(Err(ApiError::QueueUnavailable(e.to_string())));
            }
        }
    }
    Ok(results)
}

fn accepted_response(status: StatusCode, record: JobRecord) -> Response {
    let location = JobView::location(&record.id);
    (
        status,
        [(header::LOCATION, location)],
        Json(JobView::from(record)),
    )
        .into_response()
}

/// Submit a job.
#[utoipa::path(post, path = "/v1/jobs", request_body = crate::submit::JobRequest,
    responses((status = 202, body = JobView, description = "Accepted: the broker confirmed the job"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
              (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(&headers)?;
    let fingerprint = sluice_core::batching::short_hash(raw.to_string().as_bytes());
    let accepted = check(raw, &state.config, &caller, &trace_id(&headers), Utc::now())?;
    if let Some(key) = &idempotency {
        let claim = state
            .store
            .claim_idempotency(
                &caller.tenant_id,
                key,
                &fingerprint,
                accepted.record.id,
                IDEMPOTENCY_TTL,
            )
            .await?;
        if let IdempotencyClaim::Held {
            job,
            fingerprint: held,
        } = claim
        {
            return replay(&state, &caller.tenant_id, job, held == fingerprint).await;
        }
    }
    let outcome = accept_one(&state, &caller, accepted).await;
    if let (Err(_), Some(key)) = (&outcome, &idempotency) {
        // Not accepted: the key is free for the client's retry.
        if let Err(e) = state
            .store
            .release_idempotency(&caller.tenant_id, key)
            .await
        {
            tracing::warn!(error = %e, "cannot release an idempotency key");
        }
    }
    outcome
}

/// How long an `Idempotency-Key` keeps answering with its job.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(86_400);

/// The request's `Idempotency-Key`, if it sent a valid one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::InvalidRequest(
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The answer to a repeated `Idempotency-Key`: the job the first request
/// made, if this request is the same one.
async fn replay(
    state: &AppState,
    tenant: &str,
    job: JobId,
    same_request: bool,
) -> Result<Response, ApiError> {
    if !same_request {
        return Err(ApiError::IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key".into(),
        ));
    }
    match own_job(state, tenant, job).await {
        Ok(record) => {
            let mut response = accepted_response(StatusCode::OK, record);
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        Err(ApiError::JobNotFound(_)) => Err(ApiError::IdempotencyInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly".into(),
        )),
        Err(e) => Err(e),
    }
}

/// What became of one submitted job.
pub(crate) enum Admitted {
    /// Answered from the cache: the job is finished.
    Cached(JobRecord),
    /// Queued, or joined an identical job in flight, with the rate-limit
    /// headers to answer with.
    Queued(JobRecord, Option<RateLimitHeaders>),
}

/// Answers one job from the cache if it can; else checks the caller's
/// budget and rate limits, joins an identical job in flight or enqueues it.
pub(crate) async fn admit_and_enqueue(
    state: &AppState,
    caller: &Principal,
    mut accepted: Accepted,
) -> Result<Admitted, ApiError> {
    crate::webhooks::resolve_targets(
        state,
        &caller.tenant_id,
        std::slice::from_mut(&mut accepted),
    )
    .await?;
    if let Some(record) = cache::lookup(state, caller, &mut accepted).await? {
        return Ok(Admitted::Cached(record));
    }
    let tokens = request_tokens(accepted.message.endpoint, &accepted.message.body);
    budget::check(state, caller).await?;
    let limit = limits::admit(state, caller, 1, tokens).await?;
    let claim = match cache::join(state, &mut accepted).await? {
        Joined::Follows(record) => return Ok(Admitted::Queued(record, limit)),
        Joined::Hit(record) => return Ok(Admitted::Cached(record)),
        Joined::Leads => accepted.cache.as_ref().map(|p| p.entry.clone()),
        Joined::Alone => None,
    };
    cache::file(state, &mut accepted).await;
    let id = accepted.record.id;
    let enqueued = enqueue(state, vec![accepted]).await;
    if let Some(entry) = &claim {
        let confirmed = matches!(&enqueued, Ok(results) if matches!(results.first(), Some(Ok(_))));
        cache::settle(state, entry, id, confirmed).await;
    }
    match enqueued?.pop() {
        Some(Ok(record)) => Ok(Admitted::Queued(record, limit)),
        Some(Err(e)) => Err(e),
        None => Err(ApiError::QueueUnavailable("no confirm".into())),
    }
}

/// Checks the caller's budget and limits, then enqueues one job: 202, or
/// 200 with the finished job when the cache answered.
async fn accept_one(
    state: &AppState,
    caller: &Principal,
    accepted: Accepted,
) -> Result<Response, ApiError> {
    match admit_and_enqueue(state, caller, accepted).await? {
        Admitted::Cached(record) => Ok(accepted_response(StatusCode::OK, record)),
        Admitted::Queued(record, limit) => {
            let mut response = accepted_response(StatusCode::ACCEPTED, record);
            if let Some(limit) = limit {
                limit.apply(response.headers_mut());
            }
            Ok(response)
        }
    }
}

/// Submit up to `max_batch_jobs` jobs at once.
#[utoipa::path(post, path = "/v1/jobs/batch", request_body = crate::submit::BatchRequest,
    responses((status = 202, body = BatchView, description = "Each entry is the job, or why it was not enqueued"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem),
              (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit_batch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let request: crate::submit::BatchRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::InvalidRequest(format!("expected {{\"jobs\": [...]}}: {e}")))?;
    let max = state.config.api.max_batch_jobs;
    if request.jobs.is_empty() || request.jobs.len() > max {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {max} jobs (got {})",
            request.jobs.len()
        )));
    }
    let trace = trace_id(&headers);
    let now = Utc::now();
    let accepted = request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            check(raw, &state.config, &caller, &trace, now).map_err(|e| {
                let p = e.problem();
                ApiError::InvalidRequest(format!("jobs[{i}]: {}: {}", p.title, p.detail))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut accepted = accepted;
    crate::webhooks::resolve_targets(&state, &caller.tenant_id, &mut accepted).await?;
    // Cache hits answer at once; the rest are limited, then join identical
    // jobs in flight or are enqueued.
    let looked_up = futures::future::join_all(accepted.into_iter().map(|mut job| {
        let (state, caller) = (&state, &caller);
        async move {
            let hit = cache::lookup(state, caller, &mut job).await?;
            Ok::<_, ApiError>((job, hit))
        }
    }))
    .await;
    let mut hits: Vec<Option<JobRecord>> = Vec::with_capacity(looked_up.len());
    let mut queued = Vec::with_capacity(looked_up.len());
    for result in looked_up {
        let (job, hit) = result?;
        if hit.is_none() {
            queued.push(job);
        }
        hits.push(hit);
    }
    let tokens = queued
        .iter()
        .map(|a| request_tokens(a.message.endpoint, &a.message.body))
        .sum();
    let mut limit = None;
    let mut enqueued = Vec::new().into_iter();
    if !queued.is_empty() {
        budget::check(&state, &caller).await?;
        limit = limits::admit(&state, &caller, queued.len() as u64, tokens).await?;
        enqueued = cache::batch::join_and_enqueue(&state, queued)
            .await
            .into_iter();
    }
    let results: Vec<Result<JobRecord, ApiError>> = hits
        .into_iter()
        .map(|hit| match hit {
            Some(record) => Ok(record),
            None => enqueued
                .next()
                .unwrap_or_else(|| Err(ApiError::QueueUnavailable("no confirm".into()))),
        })
        .collect();
    if results.iter().all(Result::is_err) {
        if let Some(Err(e)) = results.into_iter().next() {
            return Err(e);
        }
        return Err(ApiError::QueueUnavailable("no confirm".into()));
    }
    let jobs = results
        .into_iter()
        .map(|r| match r {
            Ok(record) => BatchEntry::Job(Box::new(JobView::from(record))),
            Err(e) => BatchEntry::Error { error: e.problem() },
        })
        .collect();
    let view = BatchView {
        object: "list",
        jobs,
    };
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Some(limit) = limit {
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

/// The job, if it is the caller's.
pub(crate) async fn own_job(
    state: &AppState,
    tenant: &str,
    id: JobId,
) -> Result<JobRecord, ApiError> {
    match get_current(state.store.as_ref(), id, Utc::now()).await? {
        Some(job) if job.tenant_id == tenant => Ok(job),
        _ => Err(ApiError::JobNotFound(id.to_string())),
    }
}

/// Read a job; with `?wait=`, wait for it to end first.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = JobView), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)),
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

/// The tenant's job, once it ended or `wait` passed, whichever is first.
pub(crate) async fn wait_for_end(
    state: &AppState,
    tenant: &str,
    id: JobId,
    wait: Duration,
) -> Result<JobRecord, ApiError> {
    // Watch first, then read: an end between the two still wakes us.
    let mut watch = state.store.watch(id);
    let mut job = own_job(state, tenant, id).await?;
    let until = tokio::time::Instant::now() + wait;
    while !job.status.is_terminal() {
        let now = tokio::time::Instant::now();
        if now >= until || state.shutdown.is_cancelled() {
            break;
        }
        let mut next = until.min(now + RECHECK_EVERY);
        if let Some(deadline) = job.deadline_at {
            let left = (deadline - Utc::now()).to_std().unwrap_or_default();
            next = next.min(now + left + Duration::from_millis(1));
        }
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep_until(next) => {}
            () = state.shutdown.cancelled() => {}
        }
        job = own_job(state, tenant, id).await?;
    }
    Ok(job)
}

/// Cancel a queued job; it will never reach a provider.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "The job is already running or finished")),
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
            "job {id} is {status}; only queued jobs can be canceled"
        ))),
        CancelOutcome::NotFound => Err(ApiError::JobNotFound(id.to_string())),
    }
}
