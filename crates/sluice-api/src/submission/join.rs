//! Stage 7, join in flight: a job identical to one already queued or
//! running (same cache entry) joins it and ends with it, with its own id;
//! otherwise it claims the request and leads later identical ones.
//!
//! The protocol (invariant "a joined job is never lost"): a leader's claim
//! is `pending` until the broker confirmed its job, then `live` (stage 8
//! settles it); identical requests join only a live leader, after writing
//! their own record, because the leader's worker ends its followers by id.
//! A pending leader is waited for, briefly.
//!
//! Only jobs alike in whether they may wait (have a deadline) join each
//! other ([`EntryKey::flight`]): a job that cannot wait must not wait for
//! one that went out on a slower tier.
//!
//! Identical jobs within one submission join in two rounds ([`rounds`]):
//! the first of each request joins (or leads) and the leaders are
//! published; then the rest join, and find their leader live. (Joined in
//! one round, they would wait on a leader not published until the round
//! ends.)
//!
//! Refuses nothing (a failing in-flight map sends the job alone); 503 when
//! a follower's record cannot be written. Writes: a follower's record and
//! its place on the leader's list; a leader's pending claim.

use std::collections::HashSet;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::cache::CacheKind;
use sluice_core::JobId;
use sluice_store::cache::{Claim, EntryKey};

use super::lookup::answer_if_cached;
use super::outcome::Outcome;
use super::validate::NewJob;
use crate::cache::count;
use crate::state::AppState;

/// How long a leader's claim stands before the broker confirmed its job;
/// past it (the leader's API died, say), identical requests stop waiting
/// for that leader and one of them claims the request instead.
const PENDING_TTL: Duration = Duration::from_secs(5);
/// How often an identical request looks again at a pending leader: from
/// 2 ms to 50 ms, doubling (a confirm takes milliseconds).
const POLL: Backoff = Backoff::exponential(Duration::from_millis(2), Duration::from_millis(50));
/// Looks at the in-flight map at most this often for one request (more
/// than a pending claim can last at the last interval), then goes alone.
const MAX_LOOKS: u32 = 150;

/// The request a job would join on, if its cache plan reads.
fn joinable(job: &NewJob) -> Option<&EntryKey> {
    job.cache.as_ref().filter(|p| p.read).map(|p| &p.entry)
}

/// Splits a submission's jobs into the rounds they join in (module docs).
pub(super) fn rounds(jobs: Vec<(usize, NewJob)>) -> Vec<Vec<(usize, NewJob)>> {
    let mut seen: HashSet<EntryKey> = HashSet::new();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for (i, job) in jobs {
        match joinable(&job) {
            Some(entry) if !seen.insert(entry.clone()) => again.push((i, job)),
            _ => first.push((i, job)),
        }
    }
    [first, again]
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect()
}

/// Joins every job of a round at once: the outcomes of those that joined
/// (or found their answer cached after all), and the jobs to publish
/// (leaders, marked as such, and the ones that go alone).
pub(super) async fn all(
    state: &AppState,
    round: Vec<(usize, NewJob)>,
) -> (Vec<(usize, Outcome)>, Vec<(usize, NewJob)>) {
    let joined = futures::future::join_all(round.into_iter().map(|(i, mut job)| async move {
        let decided = one(state, &mut job).await;
        (i, job, decided)
    }))
    .await;
    let mut decided = Vec::new();
    let mut to_publish = Vec::new();
    for (i, job, outcome) in joined {
        match outcome {
            Some(outcome) => decided.push((i, outcome)),
            None => to_publish.push((i, job)),
        }
    }
    (decided, to_publish)
}

/// The job's outcome if it joined (or was answered after all); `None` when
/// it is to be published, as a leader or alone.
async fn one(state: &AppState, job: &mut NewJob) -> Option<Outcome> {
    let entry = joinable(job)?.clone();
    let flight = entry.flight(job.message.may_wait());
    let id = job.record.id;
    let mut polls = POLL.delays();
    for _ in 0..MAX_LOOKS {
        let claim = match state.cache.claim(&flight, id, PENDING_TTL).await {
            Ok(claim) => claim,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a request in flight; going alone");
                count(&state.metrics, CacheKind::Inflight, "error");
                return None;
            }
        };
        match claim {
            Claim::Leader => {
                // An identical job may have ended between the lookup and
                // the claim: its worker caches the answer before it frees
                // the claim, so a claim that follows the free sees it.
                match answer_if_cached(state, job, &entry).await {
                    Ok(Some(record)) => {
                        if let Err(e) = state.cache.abandon(&flight, id).await {
                            tracing::warn!(error = %e, "cannot drop an in-flight claim");
                        }
                        return Some(Outcome::Answered(record));
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Outcome::Refused(e)),
                }
                count(&state.metrics, CacheKind::Inflight, "miss");
                if let Some(directive) = &mut job.message.cache {
                    directive.leads = true;
                }
                return None;
            }
            Claim::Pending(_) => tokio::time::sleep(polls.wait()).await,
            Claim::Live(leader) => {
                if !within_deadline(state, job, leader).await {
                    count(&state.metrics, CacheKind::Inflight, "miss");
                    return None;
                }
                // The record first: the leader's worker ends it by id.
                if let Err(e) = state.ingest.create(vec![job.record.clone()]).await {
                    return Some(Outcome::Refused(e));
                }
                let retention = Duration::from_secs(state.config.jobs.retention_s);
                match state
                    .cache
                    .follow(&flight, leader, &job.message, retention)
                    .await
                {
                    Ok(true) => {
                        count(&state.metrics, CacheKind::Inflight, "hit");
                        return Some(Outcome::Queued(job.record.clone()));
                    }
                    Ok(false) => {
                        // The leader ended: its answer may be cached now.
                        match answer_if_cached(state, job, &entry).await {
                            Ok(Some(record)) => return Some(Outcome::Answered(record)),
                            Ok(None) => {}
                            Err(e) => return Some(Outcome::Refused(e)),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot join a request in flight; going alone");
                        count(&state.metrics, CacheKind::Inflight, "error");
                        return None;
                    }
                }
            }
        }
    }
    None
}

/// Whether `job` may wait on `leader`: a job without a deadline always
/// may (it joins only leaders without one); a job with one only on a
/// leader whose deadline is not later, since a leader is answered by its
/// own deadline (its tier keeps the margin), not by its followers'. A
/// leader that cannot be read is not waited on.
async fn within_deadline(state: &AppState, job: &NewJob, leader: JobId) -> bool {
    let Some(deadline) = job.message.deadline_at else {
        return true;
    };
    match state.store.get(leader).await {
        Ok(Some(l)) => l.deadline_at.is_some_and(|d| d <= deadline),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a job in flight; going alone");
            false
        }
    }
}

/// Whether stage 7 made `job` a leader (its claim is to be settled).
pub(super) fn leads(job: &NewJob) -> Option<&EntryKey> {
    let leads = job.message.cache.as_ref().is_some_and(|d| d.leads);
    joinable(job).filter(|_| leads)
}
