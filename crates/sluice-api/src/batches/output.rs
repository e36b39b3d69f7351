//! A batch's end: its output file (the lines answered) and its error file
//! (every other line), in OpenAI's line format and in the input's order,
//! written as they are read (a page of lines and their jobs at a time,
//! never the whole file), then the batch's last status.
//!
//! Each line: `{"id", "custom_id", "response": {"status_code",
//! "request_id", "body"}, "error"}`. An answered line's body is the job's
//! answer; a line the provider refused has the provider's status and
//! error; a line that never ran (cancelled, expired) has no response and
//! an `error` saying why.

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_core::{JobError, JobRecord};
use sluice_store::batches::{Batch, BatchLine, BatchStatus, LinePage, LineState};
use sluice_store::files::{FileLimits, NewFile, PutError};

use super::StepError;
use crate::state::AppState;

/// Lines (and their jobs) read at once.
const PAGE: usize = 256;

/// The purpose OpenAI gives a batch's output and error files.
const PURPOSE: &str = "batch_output";

/// Writes `batch`'s files and ends it (completed, expired or cancelled).
pub(super) async fn finish(state: &AppState, owner: &str, batch: &Batch) -> Result<(), StepError> {
    // The counts as they are now, not as the batch was claimed.
    let batch = state
        .batches
        .get(&batch.tenant_id, &batch.id)
        .await?
        .ok_or_else(|| StepError::Input("the batch is gone".into()))?;
    let output = match batch.completed {
        0 => None,
        _ => Some(write(state, &batch, true).await?),
    };
    let errors = match batch.total > batch.completed {
        false => None,
        true => Some(write(state, &batch, false).await?),
    };
    let status = match batch.status {
        BatchStatus::Cancelling => BatchStatus::Cancelled,
        _ if batch.expired_at.is_some() => BatchStatus::Expired,
        _ => BatchStatus::Completed,
    };
    let files = (output.as_deref(), errors.as_deref());
    super::announce(state, &batch, status, files, &[]).await?;
    super::held(
        state
            .batches
            .finish(&batch.id, owner, files.0, files.1, Utc::now())
            .await?,
    )?;
    super::ended(state, &batch, status);
    Ok(())
}

/// Writes the file of the answered lines (`answered`) or of the others;
/// its id.
async fn write(state: &AppState, batch: &Batch, answered: bool) -> Result<String, StepError> {
    let now = Utc::now();
    let kind = if answered { "output" } else { "error" };
    let file = NewFile {
        id: NewFile::new_id(),
        tenant_id: batch.tenant_id.clone(),
        purpose: PURPOSE.into(),
        filename: format!("{}_{kind}.jsonl", batch.id),
        created_at: now,
        expires_at: state.config.files.expires_at(now),
    };
    // An output is as large as its answers make it.
    let limits = FileLimits {
        max_bytes: u64::MAX,
        max_lines: u64::MAX,
    };
    let pages =
        futures::stream::try_unfold(Some(None), move |after: Option<Option<u64>>| async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = LinePage {
                after,
                limit: PAGE,
                open_only: false,
            };
            let lines = state
                .batches
                .lines(&batch.id, page)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = lines.last().map(|l| l.line) else {
                return Ok(None);
            };
            let next = (lines.len() == PAGE).then_some(Some(last));
            let mine: Vec<&BatchLine> = lines
                .iter()
                .filter(|l| (l.state == LineState::Succeeded) == answered)
                .collect();
            let records =
                futures::future::try_join_all(mine.iter().map(|l| state.store.get(l.job_id)))
                    .await
                    .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (line, record) in mine.iter().zip(records) {
                serde_json::to_writer(&mut out, &render(line, record.as_ref()))
                    .map_err(|e| e.to_string())?;
                out.push(b'\n');
            }
            Ok(Some((Bytes::from(out), next)))
        });
    let meta = state
        .files
        .put(file, limits, pages.boxed())
        .await
        .map_err(|e| match e {
            PutError::Store(e) => StepError::Store(e),
            e => StepError::Input(e.to_string()),
        })?;
    Ok(meta.id)
}

/// One line of an output or error file.
fn render(line: &BatchLine, record: Option<&JobRecord>) -> Value {
    let never_ran =
        |code: &str, message: &str| (Value::Null, json!({"code": code, "message": message}));
    let (response, error) = match (line.state, record) {
        (LineState::Succeeded, Some(job)) => (
            json!({"status_code": 200, "request_id": job.id.to_string(), "body": job.result}),
            Value::Null,
        ),
        (LineState::Failed, Some(job)) => {
            let (status, body) = failure(job.error.as_ref());
            (
                json!({"status_code": status, "request_id": job.id.to_string(), "body": body}),
                Value::Null,
            )
        }
        (LineState::Expired, _) => never_ran(
            "batch_expired",
            "This request was not run before the batch's completion window ended.",
        ),
        (LineState::Canceled, _) => never_ran(
            "batch_cancelled",
            "This request was not run: the batch was cancelled.",
        ),
        _ => never_ran(
            "batch_request_failed",
            "This request could not be made into a job (its input file was deleted, or the \
             config no longer routes its model).",
        ),
    };
    json!({
        "id": format!("batch_req_{}", line.job_id),
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    })
}

/// A failed job's status and body: the provider's own refusal where it
/// refused, else a server error with the job's reason.
fn failure(error: Option<&JobError>) -> (u16, Value) {
    match error {
        Some(JobError {
            rejection: Some(rejection),
            ..
        }) => (rejection.status, json!({"error": rejection.error})),
        Some(e) => (
            500,
            json!({"error": {"message": e.message, "type": e.kind, "param": null, "code": null}}),
        ),
        None => (
            500,
            json!({"error": {"message": "the request failed", "type": "server_error", "param": null, "code": null}}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::{JobId, Rejection};

    use super::*;

    fn line(state: LineState) -> BatchLine {
        BatchLine {
            line: 0,
            custom_id: "req-1".into(),
            job_id: JobId::new(),
            state,
        }
    }

    #[test]
    fn a_line_the_provider_refused_carries_its_status_and_error() {
        let l = line(LineState::Failed);
        let error = JobError {
            kind: "provider_rejected".into(),
            message: "too long".into(),
            rejection: Some(Rejection {
                status: 400,
                error: json!({"message": "too long", "type": "invalid_request_error", "param": null, "code": "context_length_exceeded"}),
            }),
        };
        let (status, body) = failure(Some(&error));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        let rendered = render(&l, None);
        assert_eq!(rendered["custom_id"], "req-1");
        assert_eq!(rendered["id"], format!("batch_req_{}", l.job_id));
    }

    #[test]
    fn lines_that_never_ran_say_why_and_have_no_response() {
        for (state, code) in [
            (LineState::Expired, "batch_expired"),
            (LineState::Canceled, "batch_cancelled"),
        ] {
            let rendered = render(&line(state), None);
            assert_eq!(rendered["response"], Value::Null);
            assert_eq!(rendered["error"]["code"], code);
        }
    }
}
