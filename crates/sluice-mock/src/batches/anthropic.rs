//! Anthropic's Message Batches API over the shared engine:
//! `POST /v1/messages/batches`, `GET /v1/messages/batches` (`limit`,
//! `after_id`), `GET /v1/messages/batches/{id}`,
//! `POST /v1/messages/batches/{id}/cancel`,
//! `GET /v1/messages/batches/{id}/results` and
//! `DELETE /v1/messages/batches/{id}`; each needs `anthropic-version`, and
//! errors come in Anthropic's shape.
//!
//! Creation validates at once, as Anthropic does: `requests` non-empty,
//! each with a `custom_id` of 1 to 64 letters, digits, `-` or `_`, unique
//! in the batch, and a `params` object (checked by the Messages route
//! when the line runs: a bad one is an `errored` result). A refusal
//! (`batch.refuse`) is a 400; the enqueued-token quota
//! (`batch.max_enqueued_tokens`) a 429. Models may differ between lines.
//!
//! The batch object: `{"id": "msgbatch_…", "type": "message_batch",
//! "processing_status": "in_progress" | "canceling" | "ended",
//! "request_counts": {processing, succeeded, errored, canceled, expired},
//! "ended_at", "created_at", "expires_at", "archived_at": null,
//! "cancel_initiated_at", "results_url"}`, times in RFC 3339. As on
//! Anthropic, every line counts as `processing` until the batch ends.
//! `results_url` (`http://{Host}/v1/messages/batches/{id}/results`) is set
//! once it has ended; the results are JSONL, lines in the order they
//! finished: `{"custom_id", "result": {"type": "succeeded", "message"}}`,
//! `{"type": "errored", "error": {"type": "error", "error": {type,
//! message}}}`, `{"type": "canceled"}` or `{"type": "expired"}`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::batch::{Batch, BatchError, Kind, Outcome, Status};
use super::engine::NewBatch;
use crate::error::{AnthropicError, ApiError};
use crate::routes::call::LineRoute;
use crate::routes::messages::require_version;
use crate::state::Shared;

pub(crate) const PATH: &str = "/v1/messages/batches";
pub(crate) const ONE_PATH: &str = "/v1/messages/batches/{id}";
pub(crate) const CANCEL_PATH: &str = "/v1/messages/batches/{id}/cancel";
pub(crate) const RESULTS_PATH: &str = "/v1/messages/batches/{id}/results";

/// Most requests in one batch, as Anthropic allows.
const MAX_REQUESTS: usize = 100_000;
/// Longest `custom_id`.
const MAX_CUSTOM_ID: usize = 64;
/// Most batches one list returns, and how many unless `limit` says.
const MAX_LIMIT: usize = 1_000;
const DEFAULT_LIMIT: usize = 20;

type Answer<T> = Result<T, AnthropicError>;

#[derive(Deserialize)]
struct CreateRequest<'a> {
    #[serde(borrow)]
    requests: Option<Vec<Request<'a>>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    custom_id: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

pub(crate) async fn create(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Json<Value>> {
    require_version(&headers)?;
    let request: CreateRequest = crate::routes::parse_body(&body)?;
    let lines = read_requests(request.requests.unwrap_or_default())?;
    let new = NewBatch {
        route: LineRoute::Messages,
        lines,
        kind: Kind::Anthropic,
        invalid: Vec::new(),
    };
    let mut store = shared.batches();
    match store.create(&shared, new, Instant::now()) {
        Ok(batch) => Ok(Json(object(batch, &headers))),
        Err(errors) => Err(refusal(&errors).into()),
    }
}

/// Each request's `(custom_id, params)`, or the 400 Anthropic answers.
fn read_requests(requests: Vec<Request<'_>>) -> Result<Vec<(String, String)>, ApiError> {
    if requests.is_empty() || requests.len() > MAX_REQUESTS {
        return Err(ApiError::invalid(
            "requests",
            format!("requests: must hold between 1 and {MAX_REQUESTS} requests"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::with_capacity(requests.len());
    for (i, request) in requests.into_iter().enumerate() {
        let custom_id = request.custom_id.unwrap_or_default();
        let well_formed = (1..=MAX_CUSTOM_ID).contains(&custom_id.len())
            && custom_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ApiError::invalid(
                "requests",
                format!(
                    "requests.{i}.custom_id: must be 1 to {MAX_CUSTOM_ID} letters, digits, \
                     '-' or '_'"
                ),
            ));
        }
        if !seen.insert(custom_id.clone()) {
            return Err(ApiError::invalid(
                "requests",
                format!("requests.{i}.custom_id: {custom_id:?} is used by another request"),
            ));
        }
        let params = request
            .params
            .filter(|p| p.get().trim_start().starts_with('{'))
            .ok_or_else(|| {
                ApiError::invalid(
                    "requests",
                    format!("requests.{i}.params: Field required (an object)"),
                )
            })?;
        lines.push((custom_id, params.get().to_owned()));
    }
    Ok(lines)
}

/// A refused creation: 429 over the quota, 400 otherwise.
fn refusal(errors: &[BatchError]) -> ApiError {
    let message = errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if errors.iter().any(|e| e.code == "token_limit_exceeded") {
        ApiError::rate_limited("tokens", message)
    } else {
        ApiError::invalid("requests", message)
    }
}

pub(crate) async fn get(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    require_version(&headers)?;
    let mut store = shared.batches();
    match store.get(&shared, &id, Instant::now()) {
        Some(batch) if is_anthropic(batch) => Ok(Json(object(batch, &headers))),
        _ => Err(no_such_batch(&id).into()),
    }
}

pub(crate) async fn cancel(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    require_version(&headers)?;
    let mut store = shared.batches();
    let known = store
        .get(&shared, &id, Instant::now())
        .is_some_and(is_anthropic);
    if !known {
        return Err(no_such_batch(&id).into());
    }
    match store.cancel(&shared, &id, Instant::now()) {
        Some(Ok(batch)) => Ok(Json(object(batch, &headers))),
        Some(Err(_)) => Err(ApiError::invalid(
            "id",
            format!("Batch {id} has already ended and cannot be canceled."),
        )
        .into()),
        None => Err(no_such_batch(&id).into()),
    }
}

pub(crate) async fn results(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Response> {
    require_version(&headers)?;
    let mut store = shared.batches();
    let batch = match store.get(&shared, &id, Instant::now()) {
        Some(batch) if is_anthropic(batch) => batch,
        _ => return Err(no_such_batch(&id).into()),
    };
    if batch.status.is_open() {
        return Err(ApiError::not_found(
            "id",
            format!("Batch {id} has no results yet: it is still processing."),
        )
        .into());
    }
    let mut text = String::new();
    for line in batch.results() {
        let result = match &line.outcome {
            Some(Outcome::Answered(message)) => json!({"type": "succeeded", "message": message}),
            Some(Outcome::Failed(error)) => {
                json!({"type": "errored", "error": error.anthropic_json()})
            }
            Some(Outcome::Cancelled) => json!({"type": "canceled"}),
            Some(Outcome::Expired) => json!({"type": "expired"}),
            None => continue,
        };
        text.push_str(&json!({"custom_id": line.custom_id, "result": result}).to_string());
        text.push('\n');
    }
    let jsonl = HeaderValue::from_static("application/x-jsonl");
    Ok(([(CONTENT_TYPE, jsonl)], Body::from(text)).into_response())
}

pub(crate) async fn delete(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Value>> {
    require_version(&headers)?;
    let mut store = shared.batches();
    let known = store
        .get(&shared, &id, Instant::now())
        .is_some_and(is_anthropic);
    if !known {
        return Err(no_such_batch(&id).into());
    }
    match store.remove(&id) {
        Some(Ok(())) => Ok(Json(json!({"id": id, "type": "message_batch_deleted"}))),
        Some(Err(_)) => Err(ApiError::invalid(
            "id",
            format!("Batch {id} is still processing; cancel it before deleting it."),
        )
        .into()),
        None => Err(no_such_batch(&id).into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListParams {
    after_id: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Answer<Json<Value>> {
    require_version(&headers)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit: must be between 1 and {MAX_LIMIT}"),
        )
        .into());
    }
    let mut store = shared.batches();
    let newest_first = store
        .all(&shared, Instant::now())
        .filter(|b| is_anthropic(b));
    let page: Vec<&Batch> = match &params.after_id {
        Some(after) => newest_first
            .skip_while(|b| b.id != *after)
            .skip(1)
            .take(limit + 1)
            .collect(),
        None => newest_first.take(limit + 1).collect(),
    };
    let has_more = page.len() > limit;
    let data: Vec<Value> = page
        .iter()
        .take(limit)
        .map(|b| object(b, &headers))
        .collect();
    let id_at = |i: usize| data.get(i).map(|b| b["id"].clone()).unwrap_or(Value::Null);
    Ok(Json(json!({
        "data": data,
        "has_more": has_more,
        "first_id": id_at(0),
        "last_id": id_at(data.len().saturating_sub(1)),
    })))
}

fn is_anthropic(batch: &Batch) -> bool {
    matches!(batch.kind, Kind::Anthropic)
}

fn no_such_batch(id: &str) -> ApiError {
    ApiError::not_found("id", format!("No message batch with id {id}."))
}

/// The batch object; `headers` give the host for `results_url`.
fn object(batch: &Batch, headers: &HeaderMap) -> Value {
    let ended = !batch.status.is_open();
    let counts = batch.counts();
    let processing_status = match batch.status {
        Status::Cancelling => "canceling",
        _ if ended => "ended",
        _ => "in_progress",
    };
    let request_counts = if ended {
        json!({
            "processing": 0,
            "succeeded": counts.succeeded,
            "errored": counts.failed,
            "canceled": counts.cancelled,
            "expired": counts.expired,
        })
    } else {
        json!({"processing": counts.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let results_url = ended.then(|| {
        let path = RESULTS_PATH.replace("{id}", &batch.id);
        match host {
            Some(host) => format!("http://{host}{path}"),
            None => path,
        }
    });
    let time = |moment| batch.at(moment).map(rfc3339);
    json!({
        "id": batch.id,
        "type": "message_batch",
        "processing_status": processing_status,
        "request_counts": request_counts,
        "ended_at": time(batch.moments.ended),
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at()),
        "archived_at": null,
        "cancel_initiated_at": time(batch.moments.cancelling),
        "results_url": results_url,
    })
}

/// Unix seconds as an RFC 3339 UTC time, `2024-09-24T18:37:24Z`.
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days since the epoch only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_727_203_044), "2024-09-24T18:37:24Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn requests_need_well_formed_unique_ids_and_params() {
        let parse = |text: &str| {
            let request: CreateRequest = serde_json::from_str(text).unwrap();
            read_requests(request.requests.unwrap_or_default())
        };
        let good = parse(r#"{"requests": [{"custom_id": "a-1", "params": {"model": "m"}}]}"#);
        assert_eq!(
            good.unwrap(),
            vec![("a-1".to_owned(), r#"{"model": "m"}"#.to_owned())]
        );
        for bad in [
            r#"{"requests": []}"#,
            r#"{"requests": [{"custom_id": "a b", "params": {}}]}"#,
            r#"{"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]}"#,
            r#"{"requests": [{"custom_id": "a"}]}"#,
            r#"{"requests": [{"custom_id": "a", "params": 3}]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
