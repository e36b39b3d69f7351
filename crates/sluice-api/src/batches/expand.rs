//! A batch in progress has its lines made into jobs, a chunk at a time,
//! in order, through the submission pipeline's cache, join and publish
//! stages (`submission::admit_lines`): a line may be answered from the
//! cache, join an identical job in flight, or be queued at priority
//! `batch` with the batch's window as its deadline. After each chunk is
//! accepted, the batch records how far it got (`expanded`).
//!
//! **Each line runs once, even when a driver dies mid-chunk.** A chunk is
//! always made as if it might have been begun before: each line's job is
//! looked up first. A job that exists and has started (or ended) was
//! published: it is kept. A job still queued may or may not have been
//! published; it is canceled (a compare-and-set: if a worker started it in
//! between, it is kept), and the line gets a fresh job, recorded before
//! that job is published, so a message of the old job that is in the
//! queue is dropped by the worker (canceled) and the new one runs. A job
//! the broker did not confirm (`enqueue_failed`) is replaced the same way;
//! a line with no job gets the one it was given.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use sluice_core::job::CancelOutcome;
use sluice_core::{JobId, JobStatus};
use sluice_store::batches::{Batch, BatchLine, BatchStatus, LinePage, LineState};
use sluice_store::tenants::Principal;
use tokio_util::sync::CancellationToken;

use super::{caller_of, lines, StepError};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::submission::validate::check_line;
use crate::submission::{admit_lines, Outcome};

/// Lines made into jobs at once (one group commit of records and
/// publishes).
const CHUNK: usize = 256;

/// Longest a driver expands one batch before it looks at its others (and
/// renews its leases).
const STEP: Duration = Duration::from_secs(20);

/// What to do with a line of a chunk.
enum Plan {
    /// Its job was published before: leave it.
    Keep,
    /// Make this job for it.
    Make(JobId),
}

/// How far an expansion step got.
pub(super) struct Expansion {
    /// Lines before this position have their jobs.
    pub expanded: u64,
    /// Whether every line has its job now.
    pub all_made: bool,
}

/// Makes jobs of `batch`'s lines from where it got to, for up to [`STEP`].
pub(super) async fn run(
    state: &AppState,
    owner: &str,
    batch: &Batch,
    stop: &CancellationToken,
) -> Result<Expansion, StepError> {
    let started = Instant::now();
    // The tenant's weight as it is now, read once a step (a step is at
    // most `STEP` long, so a new weight reaches the batch's next lines).
    let caller = Principal {
        weight: state.tenants.tenant_weight(&batch.tenant_id).await?,
        ..caller_of(batch)
    };
    let mut expanded = batch.expanded;
    let page = |expanded: u64| LinePage {
        after: expanded.checked_sub(1),
        limit: CHUNK,
        open_only: false,
    };
    let Some(content) = state
        .files
        .read(&batch.tenant_id, &batch.input_file_id, Utc::now())
        .await?
    else {
        // The input file was deleted before every line had its job: the
        // lines left count as made, and, having no job, end failed when
        // they are followed (their error says so).
        super::held(
            state
                .batches
                .expanded(&batch.id, owner, u64::MAX, &[])
                .await?,
        )?;
        return Ok(Expansion {
            expanded: u64::MAX,
            all_made: true,
        });
    };
    let mut raws = std::pin::pin!(lines::read(content));
    let mut position = 0u64;
    loop {
        let chunk = state.batches.lines(&batch.id, page(expanded)).await?;
        let Some(last) = chunk.last().map(|l| l.line) else {
            return Ok(Expansion {
                expanded,
                all_made: true,
            });
        };
        if stop.is_cancelled() || started.elapsed() > STEP || !in_progress(state, batch).await? {
            return Ok(Expansion {
                expanded,
                all_made: false,
            });
        }
        // The raw lines of the chunk, from the file read on in step.
        let mut raw = Vec::with_capacity(chunk.len());
        for line in &chunk {
            loop {
                let next = raws
                    .next()
                    .await
                    .ok_or_else(|| StepError::Input("the input file ended early".into()))?
                    .map_err(StepError::Input)?;
                position += 1;
                if position - 1 == line.line {
                    raw.push(next);
                    break;
                }
            }
        }
        let plans = plan(state, &chunk).await?;
        let replaced: Vec<(u64, JobId)> = chunk
            .iter()
            .zip(&plans)
            .filter_map(|(line, plan)| match plan {
                Plan::Make(id) if *id != line.job_id => Some((line.line, *id)),
                _ => None,
            })
            .collect();
        if !replaced.is_empty() {
            // Recorded before the new jobs exist: a driver that dies after
            // publishing them finds them, not the canceled ones.
            super::held(
                state
                    .batches
                    .expanded(&batch.id, owner, expanded, &replaced)
                    .await?,
            )?;
        }
        let now = Utc::now();
        let mut jobs = Vec::new();
        let mut making = Vec::new();
        let mut refused = Vec::new();
        for ((line, plan), raw) in chunk.iter().zip(&plans).zip(&raw) {
            let Plan::Make(id) = plan else { continue };
            let number = line.line + 1;
            let job = lines::parse(raw, number, batch)
                .map_err(|e| ApiError::InvalidRequest(e.message))
                .and_then(|(_, envelope)| {
                    check_line(
                        envelope,
                        &state.config,
                        &caller,
                        "",
                        *id,
                        batch.expires_at,
                        now,
                    )
                });
            match job {
                Ok(job) => {
                    jobs.push(job);
                    making.push(line.line);
                }
                // Only if the config changed since validation (a model's
                // route removed): the line fails on its own.
                Err(_) => refused.push((line.line, LineState::Failed)),
            }
        }
        let outcomes = admit_lines(state, &caller, jobs).await?;
        for (line, outcome) in making.iter().zip(outcomes) {
            match outcome {
                Outcome::Answered(_) | Outcome::Queued(_) | Outcome::Replayed(_) => {}
                Outcome::Refused(
                    e @ (ApiError::QueueUnavailable(_) | ApiError::StoreUnavailable(_)),
                ) => {
                    // Not accepted now: the chunk is made again later.
                    return Err(StepError::NotAccepted(e.problem().detail));
                }
                Outcome::Refused(_) => refused.push((*line, LineState::Failed)),
            }
        }
        if !refused.is_empty() {
            super::held(state.batches.settle(&batch.id, owner, &refused).await?)?;
        }
        expanded = last + 1;
        super::held(
            state
                .batches
                .expanded(&batch.id, owner, expanded, &[])
                .await?,
        )?;
        state.metrics.batch_lines_made.inc_by(chunk.len() as u64);
    }
}

/// Whether the batch is still in progress (not cancelled since the driver
/// claimed it).
async fn in_progress(state: &AppState, batch: &Batch) -> Result<bool, StepError> {
    let now = state.batches.get(&batch.tenant_id, &batch.id).await?;
    Ok(now.is_some_and(|b| b.status == BatchStatus::InProgress))
}

/// What to do with each line of a chunk (see the module docs).
async fn plan(state: &AppState, chunk: &[BatchLine]) -> Result<Vec<Plan>, StepError> {
    let ids: Vec<JobId> = chunk.iter().map(|l| l.job_id).collect();
    let statuses = state.store.statuses(&ids).await?;
    let mut plans = Vec::with_capacity(chunk.len());
    for (line, status) in chunk.iter().zip(statuses) {
        let plan = match status {
            None => Plan::Make(line.job_id),
            Some(JobStatus::Queued) => match state.store.cancel(line.job_id, Utc::now()).await? {
                CancelOutcome::Canceled => Plan::Make(JobId::new()),
                CancelOutcome::NotFound => Plan::Make(line.job_id),
                CancelOutcome::NotCancelable(_) => Plan::Keep,
            },
            Some(JobStatus::Failed) => {
                let record = state.store.get(line.job_id).await?;
                let unconfirmed = record
                    .and_then(|r| r.error)
                    .is_some_and(|e| e.kind == "enqueue_failed");
                if unconfirmed {
                    Plan::Make(JobId::new())
                } else {
                    Plan::Keep
                }
            }
            Some(_) => Plan::Keep,
        };
        plans.push(plan);
    }
    Ok(plans)
}
