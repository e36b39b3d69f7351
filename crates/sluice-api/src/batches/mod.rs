//! The Batch API's driver (`/v1/batches`). Every API process runs
//! [`drive`]: each tick it takes (or renews) the lease on a few batches
//! that still move (`sluice_store::batches`: one driver per batch, a
//! killed driver's batches taken over when its lease runs out) and moves
//! each one step:
//!
//! | status | step |
//! |---|---|
//! | validating | read and check every line ([`check`]) → failed, or in progress with every line given its job's id |
//! | in progress | make the next lines into jobs ([`expand`], resumable, each line run once), follow the open lines to their ends ([`track`]); all ended → finalizing; window over → lines stopped, then finalizing (expired) |
//! | cancelling | stop the open lines, follow those already running; all ended → cancelled |
//! | finalizing | write the output and error files ([`output`]) → completed or expired |
//!
//! A step that fails (a store or the broker unavailable) is taken again
//! on a later tick: every step starts from what is stored.

mod check;
mod expand;
mod lines;
mod output;
mod track;

use chrono::Utc;
use serde_json::json;
use sluice_core::webhook::{EventKind, JobEvent, WebhookMessage};
use sluice_core::JobId;
use sluice_store::batches::{Batch, BatchStatus, LineError, LineState};
use sluice_store::tenants::Principal;
use sluice_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Batches one driver takes at a tick.
const CLAIM: usize = 4;

/// Why a step stopped short; it is taken again later.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Api(#[from] crate::problem::ApiError),
    /// Some lines were not accepted (the broker or the job store).
    #[error("lines not accepted: {0}")]
    NotAccepted(String),
    /// The input file could not be read as it was before.
    #[error("the input file: {0}")]
    Input(String),
    /// Another driver holds the batch now.
    #[error("the batch's lease passed to another driver")]
    LeaseLost,
}

/// A holder's write that changed nothing: the lease is another's.
fn held(written: bool) -> Result<(), StepError> {
    if written {
        Ok(())
    } else {
        Err(StepError::LeaseLost)
    }
}

/// Whom a batch's lines are submitted as: its creator's tenant and key.
/// Their fair-share weight is set where they are made into jobs
/// ([`expand`]); they have no key cap: a batch's lines are the tenant's.
fn caller_of(batch: &Batch) -> Principal {
    Principal::with_defaults(
        batch.tenant_id.clone(),
        batch.tenant_name.clone(),
        batch.key_id.clone(),
    )
}

/// The most prompt tokens `batch`'s tenant may have queued in batches, if
/// limited: its own limit, else the config's.
async fn queue_limit(state: &AppState, batch: &Batch) -> Result<Option<u64>, StepError> {
    let own = state.tenants.batch_queue_tokens(&batch.tenant_id).await?;
    Ok(own.or(state.config.batches.queue_tokens))
}

/// Announces a batch's end to the tenant's endpoints (`batch.completed`,
/// `batch.failed`, `batch.expired`, `batch.cancelled`), before the end is
/// written: a driver that dies in between announces it again, under the
/// same `webhook-id`, and the webhooks role delivers it once.
async fn announce(
    state: &AppState,
    batch: &Batch,
    status: BatchStatus,
    files: (Option<&str>, Option<&str>),
    errors: &[LineError],
) -> Result<(), StepError> {
    let kind = match status {
        BatchStatus::Completed => EventKind::BatchCompleted,
        BatchStatus::Failed => EventKind::BatchFailed,
        BatchStatus::Expired => EventKind::BatchExpired,
        BatchStatus::Cancelled => EventKind::BatchCancelled,
        _ => return Ok(()),
    };
    let ulid: JobId = batch
        .id
        .strip_prefix("batch_")
        .and_then(|ulid| ulid.parse().ok())
        .ok_or_else(|| StepError::Input(format!("{} is not a batch id", batch.id)))?;
    let data = json!({
        "id": batch.id,
        "object": "batch",
        "status": status.as_str(),
        "input_file_id": batch.input_file_id,
        "output_file_id": files.0,
        "error_file_id": files.1,
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "errors": errors,
        "metadata": batch.metadata,
    });
    let event = JobEvent::of_batch(ulid, &batch.tenant_id, kind, Utc::now(), data);
    let message = WebhookMessage::Event(event)
        .encode()
        .map_err(|e| StepError::Input(format!("the batch's event: {e}")))?;
    for confirm in state
        .webhook_queue
        .publish_webhooks(vec![(message.into(), 0)])
        .await
    {
        confirm.map_err(|e| StepError::NotAccepted(format!("the batch's event: {e}")))?;
    }
    Ok(())
}

/// Counts a batch's end, once it is written.
fn ended(state: &AppState, batch: &Batch, status: BatchStatus) {
    state
        .metrics
        .batches_ended
        .with_label_values(&[status.as_str()])
        .inc();
    tracing::info!(batch = %batch.id, status = status.as_str(), "batch ended");
}

/// Drives batches until `stop` (see the module docs); gives up its leases
/// when it stops, so another process takes its batches over at once.
pub async fn drive(state: AppState, stop: CancellationToken) {
    let owner = format!("api-{}", JobId::new());
    let mut ticks = tokio::time::interval(state.config.batches.poll());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let lease = state.config.batches.lease();
        let claimed = match state.batches.claim(&owner, lease, Utc::now(), CLAIM).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take batches to drive; trying again");
                continue;
            }
        };
        for batch in claimed {
            if let Err(e) = step(&state, &owner, &batch, &stop).await {
                tracing::warn!(batch = %batch.id, error = %e, "a batch's step stopped short; trying again");
            }
        }
    }
    if let Err(e) = state.batches.release(&owner).await {
        tracing::warn!(error = %e, "cannot give up batch leases; they run out on their own");
    }
}

/// Moves `batch` one step.
async fn step(
    state: &AppState,
    owner: &str,
    batch: &Batch,
    stop: &CancellationToken,
) -> Result<(), StepError> {
    match batch.status {
        BatchStatus::Validating => check::run(state, owner, batch).await?,
        BatchStatus::InProgress if Utc::now() >= batch.expires_at => {
            track::stop_open(state, owner, batch, LineState::Expired).await?;
            if track::follow(state, owner, batch, batch.expanded).await? == 0 {
                held(
                    state
                        .batches
                        .finalize(&batch.id, owner, true, Utc::now())
                        .await?,
                )?;
                output::finish(state, owner, batch).await?;
            }
        }
        BatchStatus::InProgress => {
            // The lines made in this step are followed at once.
            let made = expand::run(state, owner, batch, stop).await?;
            let open = track::follow(state, owner, batch, made.expanded).await?;
            if made.all_made && open == 0 {
                held(
                    state
                        .batches
                        .finalize(&batch.id, owner, false, Utc::now())
                        .await?,
                )?;
                output::finish(state, owner, batch).await?;
            }
        }
        BatchStatus::Cancelling => {
            track::stop_open(state, owner, batch, LineState::Canceled).await?;
            if track::follow(state, owner, batch, batch.expanded).await? == 0 {
                output::finish(state, owner, batch).await?;
            }
        }
        BatchStatus::Finalizing => output::finish(state, owner, batch).await?,
        BatchStatus::Failed
        | BatchStatus::Completed
        | BatchStatus::Expired
        | BatchStatus::Cancelled => {}
    }
    Ok(())
}
