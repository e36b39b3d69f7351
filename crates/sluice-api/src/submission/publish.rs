//! Stage 8, create and publish: the jobs that lead or go alone get their
//! prompt's vector filed for the semantic cache, then their records
//! written and their messages published together (the group commit in
//! `ingest`), and each is accepted only once the broker confirmed it.
//!
//! Refuses, per job: 422 when its message cannot be encoded (nothing of
//! it is stored); 503 (`queue-unavailable`) when the broker did not
//! confirm it, and its record is then marked failed (`enqueue_failed`),
//! never left looking queued; 503 (`store-unavailable`) when the records
//! could not be written (nothing was published). Writes: the records, the
//! vectors, the messages; a leader's claim goes live once its job is
//! confirmed, and is dropped otherwise.

use std::time::Duration;

use chrono::Utc;
use sluice_core::job::Outcome as JobOutcome;
use sluice_core::JobError;
use sluice_queue::Outgoing;

use super::join::leads;
use super::outcome::Outcome;
use super::validate::NewJob;
use crate::ingest::NotPublished;
use crate::problem::ApiError;
use crate::state::AppState;

/// Publishes `jobs` in one group; their outcomes.
pub(super) async fn all(state: &AppState, jobs: Vec<(usize, NewJob)>) -> Vec<(usize, Outcome)> {
    let mut jobs = jobs;
    futures::future::join_all(jobs.iter_mut().map(|(_, job)| file_vector(state, job))).await;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut sending = Vec::with_capacity(jobs.len());
    let mut outgoing = Vec::with_capacity(jobs.len());
    for (i, job) in jobs {
        // A message that cannot be encoded is refused before anything of
        // it is stored.
        match job.message.encode() {
            Ok(body) => {
                outgoing.push(Outgoing {
                    priority: job.message.priority,
                    body: body.into(),
                    headers: job.headers(),
                });
                sending.push((i, job));
            }
            Err(e) => {
                let refused = ApiError::InvalidRequest(format!("the job cannot be encoded: {e}"));
                if let Some(entry) = leads(&job) {
                    settle(state, entry, &job, false).await;
                }
                outcomes.push((i, Outcome::Refused(refused)));
            }
        }
    }
    if sending.is_empty() {
        return outcomes;
    }
    let records = sending.iter().map(|(_, job)| job.record.clone()).collect();
    let confirms = state.ingest.publish(records, outgoing).await;
    let settled = futures::future::join_all(sending.iter().zip(confirms).map(
        |((_, job), confirm)| async move {
            let outcome = match confirm {
                Ok(()) => Outcome::Queued(job.record.clone()),
                Err(NotPublished::NotConfirmed(e)) => {
                    mark_failed(state, job, e.to_string()).await;
                    Outcome::Refused(ApiError::QueueUnavailable(e.to_string()))
                }
                Err(NotPublished::NotStored(e)) => {
                    Outcome::Refused(ApiError::StoreUnavailable(e.to_string()))
                }
            };
            if let Some(entry) = leads(job) {
                settle(state, entry, job, matches!(outcome, Outcome::Queued(_))).await;
            }
            outcome
        },
    ))
    .await;
    outcomes.extend(sending.into_iter().map(|(i, _)| i).zip(settled));
    outcomes
}

/// A job the broker did not confirm ends failed, so that nobody polls a
/// job that will never run.
async fn mark_failed(state: &AppState, job: &NewJob, why: String) {
    let failed = JobOutcome::Failed(JobError::new("enqueue_failed", why));
    let id = job.record.id;
    if let Err(e) = state.store.finish(id, &failed, Utc::now()).await {
        tracing::warn!(job = %id, error = %e, "cannot mark an unconfirmed job failed");
    }
}

/// Files the prompt's vector for the semantic cache (the worker adds the
/// answer), before the job is published; a vector that cannot be filed
/// only means the job's answer will not serve paraphrases.
async fn file_vector(state: &AppState, job: &mut NewJob) {
    let Some(plan) = &job.cache else { return };
    let (Some(embedded), Some((text, scope)), true) = (&plan.embedded, &plan.semantic, plan.write)
    else {
        return;
    };
    let id = job.record.id;
    // The vector waits for its answer at most as long as the job is kept.
    let ttl = plan.ttl + Duration::from_secs(state.config.jobs.retention_s);
    match state
        .cache
        .file_vector(scope, id, &embedded.vector, text, &embedded.buckets, ttl)
        .await
    {
        Ok(()) => {
            if let Some(directive) = &mut job.message.cache {
                directive.semantic_scope = Some(scope.scope.clone());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot file a prompt vector"),
    }
}

/// A leader's claim goes live (its job confirmed) or is dropped (not).
async fn settle(
    state: &AppState,
    entry: &sluice_store::cache::EntryKey,
    job: &NewJob,
    confirmed: bool,
) {
    let id = job.record.id;
    let flight = entry.flight(job.message.may_wait());
    let result = if confirmed {
        let retention = Duration::from_secs(state.config.jobs.retention_s);
        state.cache.confirm(&flight, id, retention).await.map(drop)
    } else {
        state.cache.abandon(&flight, id).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, job = %id, "cannot settle an in-flight claim");
    }
}
