//! OpenAI's Batch API over the shared engine: `POST /v1/batches`,
//! `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` and
//! `GET /v1/batches` (`after`, `limit`), with the input and result files
//! of [`files`](super::files).
//!
//! Creation checks the request at once (400: `endpoint` not one of
//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`;
//! `completion_window` not `"24h"`; 404: no such input file) and answers
//! a batch `validating`. The input file is checked line by line as OpenAI
//! does, and a batch with any problem is `failed` from the next read, its
//! `errors.data` listing every problem with its 1-based `line`:
//! `empty_file`, `invalid_json_line`, `missing_required_parameter`
//! (`custom_id`, `body`, `body.model`), `invalid_method` (not `POST`),
//! `invalid_url` (not the batch's endpoint), `duplicate_custom_id`,
//! `mismatched_model` (every line of a batch uses one model). Then
//! `refused` (`batch.refuse`) and `token_limit_exceeded`
//! (`batch.max_enqueued_tokens`), without a line.
//!
//! When the batch ends (completed, expired, cancelled) its results are
//! written, lines in the order they finished: `output_file_id` holds the
//! 200s, `{"id": "batch_req_…", "custom_id", "response": {"status_code":
//! 200, "request_id": "req_…", "body"}, "error": null}`; `error_file_id`
//! the rest: an error answered (a 400 of the route, a 500 of
//! `batch.line_failure`) as `"response": {"status_code", "request_id",
//! "body": {"error": …}}, "error": null`, and a line that never ran as
//! `"response": null, "error": {"code": "batch_expired" |
//! "batch_cancelled", "message"}`. Each file is there only when it has a
//! line. `request_counts` are `{total, completed, failed}`: total is 0
//! while validating and when failed, and lines that never ran are in
//! neither `completed` nor `failed`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::batch::{Batch, BatchError, Kind, Outcome, Status};
use super::engine::NewBatch;
use super::files::{no_such_file, Files, OUTPUT_PURPOSE};
use crate::error::ApiError;
use crate::routes::call::LineRoute;
use crate::routes::response_id;
use crate::state::Shared;

pub(crate) const PATH: &str = "/v1/batches";
pub(crate) const ONE_PATH: &str = "/v1/batches/{id}";
pub(crate) const CANCEL_PATH: &str = "/v1/batches/{id}/cancel";

/// The only completion window OpenAI offers.
const COMPLETION_WINDOW: &str = "24h";

/// Most batches one list returns, and how many unless `limit` says.
const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;

/// What an OpenAI batch keeps besides its lines.
#[derive(Debug)]
pub(crate) struct OpenAiBatch {
    pub(crate) input_file_id: String,
    endpoint: String,
    metadata: Value,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CreateRequest {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Value,
}

pub(crate) async fn create(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: CreateRequest = crate::routes::parse_body(&body)?;
    let input_file_id = request.input_file_id.ok_or_else(|| {
        ApiError::invalid(
            "input_file_id",
            "Missing required parameter: 'input_file_id'.",
        )
    })?;
    let endpoint = request
        .endpoint
        .ok_or_else(|| ApiError::invalid("endpoint", "Missing required parameter: 'endpoint'."))?;
    let route = LineRoute::openai(&endpoint).ok_or_else(|| {
        ApiError::invalid(
            "endpoint",
            format!(
                "Invalid value for 'endpoint': {endpoint:?}. The mock supports {}.",
                LineRoute::OPENAI_ENDPOINTS.join(", ")
            ),
        )
    })?;
    if request.completion_window.as_deref() != Some(COMPLETION_WINDOW) {
        return Err(ApiError::invalid(
            "completion_window",
            format!(
                "Invalid value for 'completion_window': only {COMPLETION_WINDOW:?} is supported."
            ),
        ));
    }
    let mut store = shared.batches();
    let file = store
        .files
        .get(&input_file_id)
        .ok_or_else(|| no_such_file("input_file_id", &input_file_id))?;
    if file.purpose != "batch" {
        return Err(ApiError::invalid(
            "input_file_id",
            format!(
                "File {input_file_id} has purpose {:?}; a batch needs purpose \"batch\".",
                file.purpose
            ),
        ));
    }
    let (lines, invalid) = read_input(&file.data, &endpoint);
    let new = NewBatch {
        route,
        lines,
        kind: Kind::OpenAi(OpenAiBatch {
            input_file_id,
            endpoint,
            metadata: request.metadata,
            output_file_id: None,
            error_file_id: None,
        }),
        invalid,
    };
    // OpenAI batches are always stored; a rejected one fails on next read.
    let object = match store.create(&shared, new, Instant::now()) {
        Ok(batch) => object(batch),
        Err(_) => Value::Null,
    };
    Ok(Json(object))
}

pub(crate) async fn get(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut store = shared.batches();
    match store.get(&shared, &id, Instant::now()) {
        Some(batch) if is_openai(batch) => Ok(Json(object(batch))),
        _ => Err(no_such_batch(&id)),
    }
}

pub(crate) async fn cancel(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut store = shared.batches();
    let known = store
        .get(&shared, &id, Instant::now())
        .is_some_and(is_openai);
    if !known {
        return Err(no_such_batch(&id));
    }
    match store.cancel(&shared, &id, Instant::now()) {
        Some(Ok(batch)) => Ok(Json(object(batch))),
        Some(Err(status)) => Err(ApiError::invalid(
            "batch_id",
            format!("Cannot cancel a batch with status '{}'.", status.as_str()),
        )),
        None => Err(no_such_batch(&id)),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(shared): State<Shared>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let mut store = shared.batches();
    let newest_first = store.all(&shared, Instant::now()).filter(|b| is_openai(b));
    let page: Vec<&Batch> = match &params.after {
        Some(after) => newest_first
            .skip_while(|b| b.id != *after)
            .skip(1)
            .take(limit + 1)
            .collect(),
        None => newest_first.take(limit + 1).collect(),
    };
    let has_more = page.len() > limit;
    let data: Vec<Value> = page.iter().take(limit).map(|b| object(b)).collect();
    let id_at = |i: usize| data.get(i).map(|b| b["id"].clone()).unwrap_or(Value::Null);
    Ok(Json(json!({
        "object": "list",
        "first_id": id_at(0),
        "last_id": id_at(data.len().saturating_sub(1)),
        "has_more": has_more,
        "data": data,
    })))
}

fn is_openai(batch: &Batch) -> bool {
    matches!(batch.kind, Kind::OpenAi(_))
}

fn no_such_batch(id: &str) -> ApiError {
    ApiError::not_found("batch_id", format!("No such Batch object: {id}"))
}

/// One line of an input file, as far as its shape goes.
#[derive(Deserialize)]
struct InputLine<'a> {
    custom_id: Option<String>,
    method: Option<String>,
    url: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Model {
    model: Option<Value>,
}

/// The `(custom_id, body)` of each line of `data`, and every problem with
/// them (see the module documentation). Blank lines are skipped.
fn read_input(data: &[u8], endpoint: &str) -> (Vec<(String, String)>, Vec<BatchError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut first_model: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    let text = String::from_utf8_lossy(data);
    for (number, text) in (1u64..).zip(text.lines()) {
        if text.trim().is_empty() {
            continue;
        }
        let mut fail = |code, param: Option<&str>, message: String| {
            errors.push(BatchError {
                code,
                message,
                param: param.map(str::to_owned),
                line: Some(number),
            });
        };
        let Ok(line) = serde_json::from_str::<InputLine>(text) else {
            fail(
                "invalid_json_line",
                None,
                "This line is not parseable as valid JSON.".into(),
            );
            continue;
        };
        let Some(custom_id) = line.custom_id.filter(|id| !id.is_empty()) else {
            fail(
                "missing_required_parameter",
                Some("custom_id"),
                "Missing required parameter: 'custom_id'.".into(),
            );
            continue;
        };
        if line.method.as_deref() != Some("POST") {
            fail(
                "invalid_method",
                Some("method"),
                "The method of each request must be POST.".into(),
            );
        }
        if line.url.as_deref() != Some(endpoint) {
            fail(
                "invalid_url",
                Some("url"),
                "The URL provided for this request does not match the batch endpoint.".into(),
            );
        }
        if !seen.insert(custom_id.clone()) {
            fail("duplicate_custom_id", Some("custom_id"), format!("The custom_id {custom_id:?} is a duplicate of another request's; each must be unique in a batch."));
        }
        let Some(body) = line.body else {
            fail(
                "missing_required_parameter",
                Some("body"),
                "Missing required parameter: 'body'.".into(),
            );
            continue;
        };
        match serde_json::from_str::<Model>(body.get()).ok().and_then(|m| m.model) {
            Some(Value::String(model)) => match &first_model {
                None => first_model = Some(model),
                Some(first) if *first != model => fail("mismatched_model", Some("body.model"), format!("The provided model {model:?} does not match the model of the other requests in the file ({first:?}). All requests in a batch must use the same model.")),
                Some(_) => {}
            },
            _ => fail("missing_required_parameter", Some("body.model"), "Missing required parameter: 'body.model'.".into()),
        }
        lines.push((custom_id, body.get().to_owned()));
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(BatchError {
            code: "empty_file",
            message: "The input file is empty.".into(),
            param: None,
            line: None,
        });
    }
    (lines, errors)
}

/// The batch object.
fn object(batch: &Batch) -> Value {
    let (input_file_id, endpoint, metadata, output, error) = match &batch.kind {
        Kind::OpenAi(o) => (
            o.input_file_id.as_str(),
            o.endpoint.as_str(),
            &o.metadata,
            o.output_file_id.as_deref(),
            o.error_file_id.as_deref(),
        ),
        Kind::Anthropic => ("", "", &Value::Null, None, None),
    };
    let counts = batch.counts();
    let counted = !matches!(batch.status, Status::Validating | Status::Failed);
    let m = &batch.moments;
    json!({
        "id": batch.id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": (batch.status == Status::Failed)
            .then(|| json!({"object": "list", "data": batch.errors})),
        "input_file_id": input_file_id,
        "completion_window": COMPLETION_WINDOW,
        "status": batch.status.as_str(),
        "output_file_id": output,
        "error_file_id": error,
        "created_at": batch.created_at,
        "in_progress_at": batch.at(m.in_progress),
        "expires_at": batch.expires_at(),
        "finalizing_at": batch.at(m.finalizing),
        "completed_at": batch.at(m.completed),
        "failed_at": batch.at(m.failed),
        "expired_at": batch.at(m.expired),
        "cancelling_at": batch.at(m.cancelling),
        "cancelled_at": batch.at(m.cancelled),
        "request_counts": {
            "total": if counted { counts.total } else { 0 },
            "completed": counts.succeeded,
            "failed": counts.failed,
        },
        "metadata": metadata,
    })
}

/// Writes an ended OpenAI batch's output and error files (see the module
/// documentation); does nothing for other batches.
pub(crate) fn write_results(batch: &mut Batch, files: &mut Files) {
    let (mut output, mut errors) = (String::new(), String::new());
    for line in batch.results() {
        let seed = format!("{}:{}", batch.id, line.custom_id);
        let id = response_id("batch_req_", seed.as_bytes());
        let request_id = response_id("req_", seed.as_bytes());
        let (file, response, error) = match &line.outcome {
            Some(Outcome::Answered(body)) => (
                &mut output,
                json!({"status_code": 200, "request_id": request_id, "body": body}),
                Value::Null,
            ),
            Some(Outcome::Failed(e)) => (
                &mut errors,
                json!({"status_code": e.status().as_u16(), "request_id": request_id, "body": e.openai_json()}),
                Value::Null,
            ),
            Some(Outcome::Cancelled) => (
                &mut errors,
                Value::Null,
                json!({"code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."}),
            ),
            Some(Outcome::Expired) => (
                &mut errors,
                Value::Null,
                json!({"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}),
            ),
            None => continue,
        };
        let entry =
            json!({"id": id, "custom_id": line.custom_id, "response": response, "error": error});
        file.push_str(&entry.to_string());
        file.push('\n');
    }
    let id = batch.id.clone();
    let Kind::OpenAi(meta) = &mut batch.kind else {
        return;
    };
    let mut write = |text: String, name: &str| {
        (!text.is_empty()).then(|| {
            files.add(
                format!("{id}_{name}.jsonl"),
                OUTPUT_PURPOSE,
                Bytes::from(text),
            )
        })
    };
    meta.output_file_id = write(output, "output");
    meta.error_file_id = write(errors, "error");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(data: &str) -> Vec<(&'static str, Option<u64>)> {
        let (_, errors) = read_input(data.as_bytes(), "/v1/completions");
        errors.iter().map(|e| (e.code, e.line)).collect()
    }

    fn line(id: &str, url: &str, model: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": url, "body": {"model": model, "prompt": "p"}})
            .to_string()
    }

    #[test]
    fn a_good_file_keeps_each_body_as_written() {
        let data = format!(
            "{}\n\n{}\n",
            line("a", "/v1/completions", "m"),
            line("b", "/v1/completions", "m")
        );
        let (lines, errors) = read_input(data.as_bytes(), "/v1/completions");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].0, "b");
        assert_eq!(lines[0].1, r#"{"model":"m","prompt":"p"}"#);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let data = [
            line("a", "/v1/completions", "m"),
            "not json".to_owned(),
            line("a", "/v1/completions", "m"),
            line("c", "/v1/chat/completions", "m"),
            line("d", "/v1/completions", "other"),
            r#"{"method": "POST", "url": "/v1/completions", "body": {}}"#.to_owned(),
            r#"{"custom_id": "f", "method": "GET", "url": "/v1/completions", "body": {}}"#
                .to_owned(),
        ]
        .join("\n");
        assert_eq!(
            codes(&data),
            vec![
                ("invalid_json_line", Some(2)),
                ("duplicate_custom_id", Some(3)),
                ("invalid_url", Some(4)),
                ("mismatched_model", Some(5)),
                ("missing_required_parameter", Some(6)),
                ("invalid_method", Some(7)),
                ("missing_required_parameter", Some(7)),
            ]
        );
        assert_eq!(codes("\n \n"), vec![("empty_file", None)]);
    }
}
