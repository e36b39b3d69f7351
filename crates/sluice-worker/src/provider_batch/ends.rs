//! Each line's end, once its provider batch ended, and the one way a job
//! goes back to the queue.
//!
//! | the line                       | a job still in the batch      | a job already re-routed   |
//! |--------------------------------|-------------------------------|---------------------------|
//! | answered                       | ends the job (batch price)    | recorded: ends the job if |
//! |                                |                               | real time has not, else a |
//! |                                |                               | superseded call           |
//! | failed, no use trying again    | fails the job                 | nothing to record         |
//! | failed, worth another try;     | back to the queue             | nothing to record         |
//! | never run; missing             |                               |                           |
//!
//! An answered or failed job ends through `Executor::finish` and
//! `Executor::settle_all`, as a real-time call's jobs do: the same
//! compare-and-set, cache, ledger rows and webhook events. Its row closes
//! once that settled; one that could not be settled stays open, and the
//! next poll reads its line again.

use std::collections::HashMap;

use futures::StreamExt;
use sluice_core::cache::{CacheKind, CachedAnswer};
use sluice_store::cache::EntryKey;

use sluice_core::job::Outcome;
use sluice_core::{JobId, JobMessage};
use sluice_providers::batch::{BatchResults, LineResult, RemoteState};
use sluice_store::provider_batches::{HeldBatch, OpenJob};

use super::plan::Target;
use super::poll::{Poller, StepError};
use super::SettledJobs;
use crate::execute::Running;
use crate::pending::Pending;
use crate::retry::with_store_retry;

/// Cache entries read at once before a batch is sent.
const CACHE_READS_AT_ONCE: usize = 64;

impl Poller {
    /// Ends (or sends back) every open job of `batch` by its line in
    /// `results`; whether every one is settled.
    pub(crate) async fn end_lines(
        &self,
        target: &Target,
        batch: &HeldBatch,
        results: BatchResults,
        state: RemoteState,
    ) -> Result<bool, StepError> {
        let mut lines: HashMap<String, LineResult> = results
            .lines
            .into_iter()
            .map(|l| (l.custom_id().to_owned(), l))
            .collect();
        let mut ending: Vec<(&OpenJob, Outcome)> = Vec::new();
        let mut back: Vec<&OpenJob> = Vec::new();
        let mut closed: Vec<JobId> = Vec::new();
        for open in &batch.jobs {
            match lines.remove(&open.job.message.id.to_string()) {
                Some(LineResult::Answered { answer, .. }) => ending.push((
                    open,
                    Outcome::Succeeded {
                        result: answer.body,
                        usage: answer.usage,
                        provider: target.provider.clone(),
                        cost_micros: answer.cost_micros,
                        tier: answer.tier,
                    },
                )),
                Some(LineResult::Failed { error, .. })
                    if !error.is_retryable() && !open.rerouted =>
                {
                    ending.push((open, Outcome::Failed(error.job_error())));
                }
                _ if open.rerouted => closed.push(open.job.message.id),
                _ => back.push(open),
            }
        }
        let reason = if state == RemoteState::Failed {
            "refused"
        } else {
            "line"
        };
        if !back.is_empty() {
            self.reroute(batch, &back, reason, false, true).await?;
        }
        if !closed.is_empty() {
            with_store_retry("close jobs", || {
                self.batches.store.settled(&batch.id, &closed)
            })
            .await?;
        }
        self.end(batch, ending).await
    }

    /// Ends the open jobs of `batch` (but those in `skip`) whose answer
    /// is in the cache by now, because an identical job was answered while
    /// they collected: no line, no cost, as a hit at submission would have
    /// been. Only jobs whose callers let them read the cache. The ids ended.
    pub(crate) async fn end_from_cache(
        &self,
        batch: &HeldBatch,
        skip: &[JobId],
    ) -> Result<Vec<JobId>, StepError> {
        let cache = &self.executor.followers.cache;
        let entries: Vec<(JobId, EntryKey)> = batch
            .jobs
            .iter()
            .filter(|j| !j.rerouted && !skip.contains(&j.job.message.id))
            .filter_map(|j| {
                let message = &j.job.message;
                let directive = message.cache.as_ref().filter(|d| d.read)?;
                let entry = EntryKey {
                    tenant: message.tenant_id.clone(),
                    model: message.model.clone(),
                    key: directive.key.clone(),
                };
                Some((message.id, entry))
            })
            .collect();
        let answers: HashMap<JobId, CachedAnswer> = futures::stream::iter(entries)
            .map(|(id, entry)| async move {
                match cache.get(&entry).await {
                    Ok(answer) => answer.map(|a| (id, a)),
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "cannot read the cache before a batch is sent");
                        None
                    }
                }
            })
            .buffer_unordered(CACHE_READS_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let found: Vec<(&OpenJob, CachedAnswer)> = batch
            .jobs
            .iter()
            .filter_map(|j| Some((j, answers.get(&j.job.message.id)?.clone())))
            .collect();
        let ids: Vec<JobId> = found.iter().map(|(o, _)| o.job.message.id).collect();
        let ending = found
            .into_iter()
            .map(|(open, answer)| {
                let info = answer.info(CacheKind::Exact, None);
                (open, Outcome::Cached { answer, info })
            })
            .collect();
        if self.end(batch, ending).await? {
            Ok(ids)
        } else {
            Err(StepError::Unsettled)
        }
    }

    /// Ends jobs with their lines' outcomes; whether every one settled.
    async fn end(
        &self,
        batch: &HeldBatch,
        ending: Vec<(&OpenJob, Outcome)>,
    ) -> Result<bool, StepError> {
        if ending.is_empty() {
            return Ok(true);
        }
        let settled = SettledJobs::default();
        let started_at = batch.submitted_at.unwrap_or(batch.created_at);
        let (running, outcomes): (Vec<Running>, Vec<Outcome>) = ending
            .into_iter()
            .map(|(open, outcome)| {
                let message = open.job.message.clone();
                let delivery = settled.delivery(message.id);
                let running = Running {
                    pending: Pending::new(message, delivery),
                    started_at,
                    attempt: open.job.attempt,
                    sent_before: open.job.sent_before.clone(),
                    // A batch line is no call of the router's.
                    abandoned: Vec::new(),
                };
                (running, outcome)
            })
            .unzip();
        let n = running.len();
        // Settling counts each job out of the worker's held jobs; these
        // were counted out when their messages were acked.
        self.metrics
            .inflight_jobs
            .add(i64::try_from(n).unwrap_or(i64::MAX));
        let ends = self.executor.finish(running, outcomes, None).await;
        self.executor.settle_all(ends).await;
        let done = settled.take();
        if !done.is_empty() {
            with_store_retry("close jobs", || {
                self.batches.store.settled(&batch.id, &done)
            })
            .await?;
        }
        Ok(done.len() == n)
    }

    /// Publishes `jobs` back to the queue, marked `rerouted` (they go out
    /// in real time), then marks them so in the record (`hedge`: the batch
    /// too) and, with `close`, closes their rows (their lines will not
    /// come: nothing is left to record).
    pub(crate) async fn reroute(
        &self,
        batch: &HeldBatch,
        jobs: &[&OpenJob],
        reason: &'static str,
        hedge: bool,
        close: bool,
    ) -> Result<(), StepError> {
        let messages: Vec<JobMessage> = jobs
            .iter()
            .map(|j| JobMessage {
                rerouted: true,
                ..j.job.message.clone()
            })
            .collect();
        let ids: Vec<JobId> = messages.iter().map(|m| m.id).collect();
        if !messages.is_empty() {
            // No longer waiting in a batch: once a worker calls it in real
            // time, it cannot be canceled.
            let store = &self.executor.store;
            with_store_retry("mark waiting", || store.mark_waiting(&ids, None)).await?;
            sluice_queue::publish_jobs(self.queue.as_ref(), &messages).await?;
        }
        let owner = &self.batches.owner;
        let marked = with_store_retry("reroute", || {
            self.batches.store.rerouted(&batch.id, owner, &ids, hedge)
        })
        .await?;
        if !marked {
            return Err(StepError::Lost);
        }
        self.metrics
            .provider_batch_reroutes
            .with_label_values(&[batch.target.provider.as_str(), reason])
            .inc_by(ids.len() as u64);
        if close && !ids.is_empty() {
            with_store_retry("close jobs", || self.batches.store.settled(&batch.id, &ids)).await?;
        }
        Ok(())
    }
}
