//! Following a batch's lines to their ends: the jobs of the open lines are
//! read (their statuses only, a page at a time, one round trip per page)
//! and the lines whose jobs ended are settled, which is what the batch's
//! `request_counts` show. A batch cancelled or out of time has its open
//! lines stopped: a line without a job yet ends at once, a queued job is
//! canceled (a compare-and-set), and a job already running is left to end.

use chrono::Utc;
use futures::StreamExt;
use sluice_core::job::CancelOutcome;
use sluice_core::{JobId, JobStatus};
use sluice_store::batches::{Batch, BatchLine, LinePage, LineState};

use super::StepError;
use crate::state::AppState;

/// Lines read at once.
const PAGE: usize = 1000;
/// Jobs canceled at once.
const CANCELS: usize = 32;

/// The line state a job's status ends it in; `None` while it runs. A job
/// that is gone (never stored, or lost) ends its line failed.
fn ended(status: Option<JobStatus>) -> Option<LineState> {
    match status {
        Some(JobStatus::Queued | JobStatus::Running) => None,
        Some(JobStatus::Succeeded) => Some(LineState::Succeeded),
        Some(JobStatus::Expired) => Some(LineState::Expired),
        Some(JobStatus::Canceled) => Some(LineState::Canceled),
        Some(JobStatus::Failed) | None => Some(LineState::Failed),
    }
}

/// Settles the lines whose jobs ended; how many lines are still open,
/// those without a job yet (at or past `expanded`) included.
pub(super) async fn follow(
    state: &AppState,
    owner: &str,
    batch: &Batch,
    expanded: u64,
) -> Result<u64, StepError> {
    let mut open = 0u64;
    let mut after = None;
    loop {
        let page = open_page(state, batch, after).await?;
        let Some(last) = page.last() else {
            return Ok(open);
        };
        after = Some(last.line);
        let made: Vec<&BatchLine> = page.iter().filter(|l| l.line < expanded).collect();
        let ids: Vec<_> = made.iter().map(|l| l.job_id).collect();
        let statuses = state.store.statuses(&ids).await?;
        let ends: Vec<(u64, LineState)> = made
            .iter()
            .zip(statuses)
            .filter_map(|(line, status)| ended(status).map(|s| (line.line, s)))
            .collect();
        open += (page.len() - ends.len()) as u64;
        if !ends.is_empty() {
            super::held(state.batches.settle(&batch.id, owner, &ends).await?)?;
        }
        if page.len() < PAGE {
            return Ok(open);
        }
    }
}

/// Stops every open line, ending it `why` (cancelled or expired); a line
/// whose job is already running stays open until its job ends.
pub(super) async fn stop_open(
    state: &AppState,
    owner: &str,
    batch: &Batch,
    why: LineState,
) -> Result<(), StepError> {
    let mut after = None;
    loop {
        let page = open_page(state, batch, after).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.line);
        let now = Utc::now();
        // Lines without a job yet end at once. They may still be made, by
        // a driver that read the batch before the cancel; the expansion
        // checks the batch's status before each chunk.
        let (made, unmade): (Vec<_>, Vec<_>) =
            page.iter().partition(|line| line.line < batch.expanded);
        let mut ends: Vec<(u64, LineState)> = unmade.iter().map(|l| (l.line, why)).collect();
        let jobs: Vec<(u64, JobId)> = made.iter().map(|l| (l.line, l.job_id)).collect();
        let store = &state.store;
        let cancels = futures::stream::iter(jobs)
            .map(|(line, job)| async move { (line, store.cancel(job, now).await) })
            .buffered(CANCELS)
            .collect::<Vec<_>>()
            .await;
        for (line, canceled) in cancels {
            let end = match canceled? {
                CancelOutcome::Canceled => Some(why),
                CancelOutcome::NotCancelable(status) => ended(Some(status)),
                CancelOutcome::NotFound => Some(LineState::Failed),
            };
            ends.extend(end.map(|s| (line, s)));
        }
        if !ends.is_empty() {
            super::held(state.batches.settle(&batch.id, owner, &ends).await?)?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}

async fn open_page(
    state: &AppState,
    batch: &Batch,
    after: Option<u64>,
) -> Result<Vec<BatchLine>, StepError> {
    let page = LinePage {
        after,
        limit: PAGE,
        open_only: true,
    };
    Ok(state.batches.lines(&batch.id, page).await?)
}
