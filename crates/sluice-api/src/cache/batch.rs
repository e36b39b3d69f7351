//! Joining in flight for a batch submission: each job of the batch that
//! the cache did not answer joins an identical job already queued or
//! running, or leads, exactly as a single submission does ([`join`]).
//!
//! Identical jobs within one batch join in two rounds: the first of each
//! request joins (or leads) and the leaders are published; then the rest
//! join, and find their leader live. (Joined in one round, they would wait
//! on a leader that is not published until the round ends.)

use std::collections::HashSet;

use sluice_core::JobRecord;
use sluice_store::cache::EntryKey;

use super::{file, join, settle, Joined};
use crate::jobs::enqueue;
use crate::problem::ApiError;
use crate::submit::Accepted;
use crate::AppState;

/// Each job's outcome, in the order of `jobs`: its record (queued, joined,
/// or answered by the cache after all), or why it was not enqueued.
pub(crate) async fn join_and_enqueue(
    state: &AppState,
    jobs: Vec<Accepted>,
) -> Vec<Result<JobRecord, ApiError>> {
    let mut outcomes: Vec<Option<Result<JobRecord, ApiError>>> =
        std::iter::repeat_with(|| None).take(jobs.len()).collect();
    let mut seen: HashSet<EntryKey> = HashSet::new();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for (i, job) in jobs.into_iter().enumerate() {
        match joinable(&job) {
            Some(entry) if !seen.insert(entry.clone()) => again.push((i, job)),
            _ => first.push((i, job)),
        }
    }
    for round in [first, again] {
        if !round.is_empty() {
            run_round(state, round, &mut outcomes).await;
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(ApiError::QueueUnavailable("no confirm".into()))))
        .collect()
}

/// The request a job would join on, if its cache plan reads.
fn joinable(job: &Accepted) -> Option<&EntryKey> {
    job.cache.as_ref().filter(|p| p.read).map(|p| &p.entry)
}

/// Joins every job of `round` at once, publishes the ones that lead or go
/// alone in one enqueue, and settles the leaders' claims.
async fn run_round(
    state: &AppState,
    round: Vec<(usize, Accepted)>,
    outcomes: &mut [Option<Result<JobRecord, ApiError>>],
) {
    let joined = futures::future::join_all(round.into_iter().map(|(i, mut job)| async move {
        let joined = join(state, &mut job).await;
        if matches!(joined, Ok(Joined::Leads | Joined::Alone)) {
            // To be published: its prompt's vector is filed first.
            file(state, &mut job).await;
        }
        (i, job, joined)
    }))
    .await;
    let mut publish = Vec::new();
    for (i, job, joined) in joined {
        let claim = match joined {
            Ok(Joined::Follows(record) | Joined::Hit(record)) => {
                outcomes[i] = Some(Ok(record));
                continue;
            }
            Err(e) => {
                outcomes[i] = Some(Err(e));
                continue;
            }
            Ok(Joined::Leads) => joinable(&job).cloned(),
            Ok(Joined::Alone) => None,
        };
        publish.push((i, job.record.id, claim, job));
    }
    if publish.is_empty() {
        return;
    }
    let (meta, jobs): (Vec<_>, Vec<_>) = publish
        .into_iter()
        .map(|(i, id, claim, job)| ((i, id, claim), job))
        .unzip();
    let enqueued = enqueue(state, jobs).await;
    let mut results: Vec<Option<Result<JobRecord, ApiError>>> = match enqueued {
        Ok(results) => results.into_iter().map(Some).collect(),
        Err(e) => {
            let detail = e.problem().detail;
            meta.iter()
                .map(|_| Some(Err(ApiError::StoreUnavailable(detail.clone()))))
                .collect()
        }
    };
    results.resize_with(meta.len(), || None);
    for ((i, id, claim), result) in meta.into_iter().zip(results) {
        if let Some(entry) = &claim {
            settle(state, entry, id, matches!(result, Some(Ok(_)))).await;
        }
        outcomes[i] = result;
    }
}
