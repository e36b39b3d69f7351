//! A batch's first step, validating: every line of its input file is
//! read and checked, before any job exists. Every line needs a unique
//! `custom_id`, method POST, the batch's endpoint as its `url`, and a body
//! the submission pipeline accepts (a model with a route, among the rest).
//! A file with any bad line fails the batch, with each bad line's number
//! and reason (OpenAI's `errors.data`), and nothing of it runs. Otherwise
//! each line is given the id of its job, in order (so the jobs' ids sort
//! as the lines do), and the batch moves to in progress with every line
//! stored open: from then on, a line is never given another job unless
//! its first was never published (see `expand`).

use std::collections::HashMap;

use chrono::Utc;
use futures::StreamExt;
use sluice_core::JobId;
use sluice_store::batches::{Batch, BatchLine, BatchStatus, LineError, LineState};

use super::lines;
use super::{caller_of, StepError};
use crate::state::AppState;
use crate::submission::validate::check_line;

/// Bad lines reported at most; a file with more says how many it left out.
const MAX_ERRORS: usize = 100;

/// Validates `batch`'s input file; the batch ends failed or in progress.
pub(super) async fn run(state: &AppState, owner: &str, batch: &Batch) -> Result<(), StepError> {
    let now = Utc::now();
    let Some(content) = state
        .files
        .read(&batch.tenant_id, &batch.input_file_id, now)
        .await?
    else {
        let error = file_error(
            "file_not_found",
            format!("the input file {} no longer exists", batch.input_file_id),
        );
        return fail(state, owner, batch, &[error]).await;
    };
    let caller = caller_of(batch);
    let mut errors = Vec::new();
    let mut more = 0usize;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut accepted = Vec::new();
    let mut tokens = 0u64;
    let mut raws = std::pin::pin!(lines::read(content));
    let mut number = 0u64;
    while let Some(raw) = raws.next().await {
        number += 1;
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(LineError {
                    code: "invalid_file".into(),
                    message: e,
                    line: Some(number),
                    param: None,
                });
                break;
            }
        };
        if lines::is_blank(&raw) {
            continue;
        }
        let mut bad = |e: LineError| {
            if errors.len() < MAX_ERRORS {
                errors.push(e);
            } else {
                more += 1;
            }
        };
        let (custom_id, envelope) = match lines::parse(&raw, number, batch) {
            Ok(parsed) => parsed,
            Err(e) => {
                bad(e);
                continue;
            }
        };
        if let Some(first) = seen.insert(custom_id.clone(), number) {
            bad(LineError {
                code: "duplicate_custom_id".into(),
                message: format!("the custom_id {custom_id:?} is on line {first} too"),
                line: Some(number),
                param: Some("custom_id".into()),
            });
            continue;
        }
        let id = JobId::new();
        match check_line(
            envelope,
            &state.config,
            &caller,
            "",
            id,
            batch.expires_at,
            now,
        ) {
            Ok(job) => {
                tokens += job.tokens();
                accepted.push(BatchLine {
                    line: number - 1,
                    custom_id,
                    job_id: id,
                    state: LineState::Open,
                });
            }
            Err(e) => bad(lines::refused(&e, number)),
        }
    }
    if more > 0 {
        errors.push(file_error(
            "too_many_errors",
            format!("{more} more lines are bad; only the first {MAX_ERRORS} are listed"),
        ));
    }
    if errors.is_empty() && accepted.is_empty() {
        errors.push(file_error(
            "empty_file",
            "the input file has no requests".into(),
        ));
    }
    if errors.is_empty() {
        if let Some(limit) = super::queue_limit(state, batch).await? {
            let queued = state
                .batches
                .queued_tokens(&batch.tenant_id, &batch.id)
                .await?;
            if queued + tokens > limit {
                errors.push(file_error(
                    "token_limit_exceeded",
                    format!(
                        "Enqueued token limit reached: this batch's {tokens} prompt tokens and the \
                         {queued} of the tenant's batches in progress exceed its batch_queue_tokens \
                         of {limit}. Wait for a batch to finish, or make this one smaller."
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        let begun = state
            .batches
            .begin(&batch.id, owner, &accepted, tokens, Utc::now());
        super::held(begun.await?)
    } else {
        fail(state, owner, batch, &errors).await
    }
}

/// Fails the batch with `errors`, announced first.
async fn fail(
    state: &AppState,
    owner: &str,
    batch: &Batch,
    errors: &[LineError],
) -> Result<(), StepError> {
    super::announce(state, batch, BatchStatus::Failed, (None, None), errors).await?;
    super::held(
        state
            .batches
            .fail(&batch.id, owner, errors, Utc::now())
            .await?,
    )?;
    super::ended(state, batch, BatchStatus::Failed);
    Ok(())
}

/// An error of the whole file (no line).
fn file_error(code: &str, message: String) -> LineError {
    LineError {
        code: code.to_owned(),
        message,
        line: None,
        param: None,
    }
}
