//! Reading a job as its tenant: at once, or once it ends (long-poll).

use std::time::Duration;

use chrono::Utc;
use sluice_core::{JobId, JobRecord};
use sluice_store::jobs::get_current;

use crate::problem::ApiError;
use crate::state::AppState;

/// A long-poll (or a stream) re-reads its job at least this often, in case
/// a wake-up was lost.
pub(crate) const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The job, if it is the caller's (another tenant's job is not found).
pub async fn own_job(state: &AppState, tenant: &str, id: JobId) -> Result<JobRecord, ApiError> {
    match get_current(state.store.as_ref(), id, Utc::now()).await? {
        Some(job) if job.tenant_id == tenant => Ok(job),
        _ => Err(ApiError::JobNotFound(id.to_string())),
    }
}

/// The tenant's job, once it ended or `wait` passed, whichever is first
/// (at once when the API is shutting down).
pub async fn wait_for_end(
    state: &AppState,
    tenant: &str,
    id: JobId,
    wait: Duration,
) -> Result<JobRecord, ApiError> {
    // Watch first, then read: an end between the two still wakes us.
    let mut watch = state.store.watch(id);
    // The reads are boxed: held while the wait sleeps, this future is then
    // only as large as the wait itself, not the store call.
    let mut job = Box::pin(own_job(state, tenant, id)).await?;
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
        job = Box::pin(own_job(state, tenant, id)).await?;
    }
    Ok(job)
}
