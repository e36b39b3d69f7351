//! The poller every worker runs: every `poll_s` it claims the provider
//! batches due (its own, those whose lease ran out, collecting ones whose
//! time is up) and moves each one step on:
//!
//! - collecting → submitting → submitted: its lines go to the provider;
//!   a refused batch sends its jobs back to the queue;
//! - submitted: the provider's status; once the batch ended, each line's
//!   end ([`super::ends`]); past the hedge time, the batch is cancelled
//!   and its open jobs go back to the queue, while it is still polled for
//!   the lines the provider finished (and bills) anyway.
//!
//! A batch whose hedge time passes before it was submitted never is: its
//! jobs go back to the queue. A worker taking over a batch left in
//! `submitting` first looks for it at the provider by its metadata
//! (`sluice_batch_id`, OpenAI); found, it is recorded, not sent again.
//! Where the provider keeps no metadata (Anthropic), it is submitted again
//! (the provider may then hold two; the log says so).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sluice_core::metrics::Metrics;
use sluice_core::JobId;
use sluice_providers::batch::{BatchLine, RemoteBatch, RemoteState};
use sluice_providers::ProviderError;
use sluice_queue::{JobQueue, QueueError};
use sluice_store::provider_batches::{BatchState, HeldBatch, OpenJob};
use sluice_store::StoreError;
use tokio_util::sync::CancellationToken;

use super::plan::Target;
use super::ProviderBatches;
use crate::execute::Executor;
use crate::retry::with_store_retry;

/// The metadata key that names a provider batch's record (OpenAI keeps it).
const BATCH_ID_KEY: &str = "sluice_batch_id";
/// Batches claimed per poll.
const CLAIM: usize = 32;
/// Batches moved on at once.
const AT_ONCE: usize = 4;
/// Job records read at once before a batch is sent.
const READS_AT_ONCE: usize = 64;

/// Why a step of a batch stopped (it is tried again at the next poll).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// Some jobs' ends could not be stored, written or announced.
    #[error("some jobs' ends could not be settled")]
    Unsettled,
    /// Another worker took the batch over.
    #[error("the batch's lease was lost to another worker")]
    Lost,
}

pub struct Poller {
    pub batches: Arc<ProviderBatches>,
    pub(crate) executor: Arc<Executor>,
    pub queue: Arc<dyn JobQueue>,
    pub metrics: Arc<Metrics>,
}

impl Poller {
    /// Polls until `stop`, then gives up this worker's leases.
    pub async fn run(&self, stop: CancellationToken) {
        let Some((every, lease)) = self.batches.targets.poll_and_lease() else {
            return;
        };
        loop {
            self.poll_once(lease).await;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        if let Err(e) = self.batches.store.release(&self.batches.owner).await {
            tracing::warn!(error = %e, "cannot give up provider batch leases; they run out instead");
        }
    }

    /// One round: claim what is due and move each batch on.
    pub async fn poll_once(&self, lease: Duration) {
        let store = &self.batches.store;
        match store
            .claim(&self.batches.owner, lease, CLAIM, Utc::now())
            .await
        {
            Ok(claimed) => {
                let steps = futures::stream::iter(claimed).for_each_concurrent(
                    AT_ONCE,
                    |batch| async move {
                        let id = batch.id.clone();
                        if let Err(e) = self.advance(batch).await {
                            tracing::warn!(batch = %id, error = %e, "provider batch step failed; trying again at the next poll");
                        }
                    },
                );
                self.renewing(lease, steps).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim provider batches"),
        }
        self.show_counts().await;
    }

    /// Runs `steps`, renewing this worker's leases every third of a lease
    /// while they last, so that a long step (a large file sent or read)
    /// is never taken over half done.
    async fn renewing(&self, lease: Duration, steps: impl std::future::Future<Output = ()>) {
        tokio::pin!(steps);
        loop {
            tokio::select! {
                () = &mut steps => return,
                () = tokio::time::sleep(lease / 3) => {
                    if let Err(e) = self.batches.store.renew(&self.batches.owner, lease, Utc::now()).await {
                        tracing::warn!(error = %e, "cannot renew provider batch leases");
                    }
                }
            }
        }
    }

    async fn show_counts(&self) {
        let Ok(counts) = self.batches.store.counts().await else {
            return;
        };
        self.metrics.provider_batches.reset();
        for c in counts {
            self.metrics
                .provider_batches
                .with_label_values(&[c.provider.as_str(), c.state.as_str()])
                .set(i64::try_from(c.batches).unwrap_or(i64::MAX));
        }
    }

    async fn advance(&self, batch: HeldBatch) -> Result<(), StepError> {
        // A collecting batch stops taking jobs first, so that every job in
        // it is seen by what follows (none appended meanwhile is lost).
        let (batch, taken_over) = if batch.state == BatchState::Collecting {
            let owner = &self.batches.owner;
            let begun = with_store_retry("begin submit", || {
                self.batches.store.begin_submit(&batch.id, owner)
            })
            .await?;
            match begun {
                Some(batch) => (batch, false),
                None => return Ok(()),
            }
        } else {
            let taken_over = batch.state == BatchState::Submitting;
            (batch, taken_over)
        };
        let Some(target) = self.batches.targets.get(&batch.target).cloned() else {
            tracing::error!(batch = %batch.id, provider = %batch.target.provider, model = %batch.target.model,
                "the config no longer sends this model to this provider's batches; its jobs go back to the queue");
            return self.give_back(&batch, "refused").await;
        };
        match batch.state {
            BatchState::Submitting => {
                if taken_over {
                    // Its worker died during the submission: the provider
                    // may hold it already.
                    if let Some(remote) = target.api.find(BATCH_ID_KEY, &batch.id).await? {
                        tracing::info!(batch = %batch.id, remote = %remote.id, "found the batch a dead worker submitted");
                        return self.record_submitted(&batch.id, &remote.id).await;
                    }
                    tracing::warn!(batch = %batch.id, "taking over a batch whose submission may have reached the provider unseen; submitting it");
                }
                self.submit(&target, batch).await
            }
            BatchState::Submitted => self.look(&target, batch).await,
            BatchState::Collecting | BatchState::Done => Ok(()),
        }
    }

    /// Sends a batch's lines to the provider and records its id. Too late
    /// (its hedge time passed) or refused: its jobs go back to the queue.
    async fn submit(&self, target: &Target, batch: HeldBatch) -> Result<(), StepError> {
        if Utc::now() >= batch.hedge_at {
            tracing::warn!(batch = %batch.id, "a provider batch was not submitted before its hedge time; its jobs go back to the queue");
            return self.give_back(&batch, "hedge").await;
        }
        // Cancel is checked just before the batch is sent: a job that
        // ended meanwhile (canceled) gets no line.
        let mut ended = self.ended_meanwhile(&batch).await?;
        if !ended.is_empty() {
            with_store_retry("close jobs", || {
                self.batches.store.settled(&batch.id, &ended)
            })
            .await?;
        }
        // So is the cache: an identical job answered meanwhile answers it.
        let cached = self.end_from_cache(&batch, &ended).await?;
        ended.extend(cached);
        let mut lines: Vec<BatchLine> = Vec::with_capacity(batch.jobs.len());
        let mut unfit: Vec<&OpenJob> = Vec::new();
        for open in batch
            .jobs
            .iter()
            .filter(|j| !j.rerouted && !ended.contains(&j.job.message.id))
        {
            match target.line(&open.job.message) {
                Ok(line) => lines.push(line),
                Err(_) => unfit.push(open),
            }
        }
        if !unfit.is_empty() {
            self.reroute(&batch, &unfit, "line", false, true).await?;
        }
        if lines.is_empty() {
            return self.finish(&batch.id).await;
        }
        let metadata = BTreeMap::from([(BATCH_ID_KEY.to_owned(), batch.id.clone())]);
        match target
            .api
            .submit(batch.target.endpoint, &lines, &metadata)
            .await
        {
            Ok(remote) => {
                tracing::info!(batch = %batch.id, remote = %remote.id, lines = lines.len(), provider = %target.provider, "provider batch submitted");
                self.record_submitted(&batch.id, &remote.id).await
            }
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => {
                tracing::warn!(batch = %batch.id, error = %e, "the provider refused the batch; its jobs go back to the queue");
                self.give_back(&batch, "refused").await
            }
        }
    }

    /// The jobs of `batch` whose records ended (or are gone) since they
    /// were appended: canceled by their callers. Their ends are announced
    /// again (the API's announcement may have been lost, and no message of
    /// theirs is left to make the worker do it).
    async fn ended_meanwhile(&self, batch: &HeldBatch) -> Result<Vec<JobId>, StepError> {
        let store = &self.executor.store;
        let ids: Vec<JobId> = batch.jobs.iter().map(|j| j.job.message.id).collect();
        let read = futures::stream::iter(ids)
            .map(|id| async move {
                let record = with_store_retry("read", || store.get(id)).await?;
                Ok::<_, StoreError>((id, record))
            })
            .buffer_unordered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut ended = Vec::new();
        let mut announce = Vec::new();
        for r in read {
            match r? {
                (id, None) => ended.push(id),
                (id, Some(record)) if record.status.is_terminal() => {
                    ended.push(id);
                    if record.webhook.is_some() {
                        announce.push(record);
                    }
                }
                _ => {}
            }
        }
        if !announce.is_empty() {
            self.executor.events.ended(&announce).await?;
        }
        Ok(ended)
    }

    /// Reads a submitted batch's status: ends its lines once it ended,
    /// hedges it once its time is up.
    async fn look(&self, target: &Target, batch: HeldBatch) -> Result<(), StepError> {
        let Some(remote_id) = batch.remote_id.clone() else {
            return self.give_back(&batch, "refused").await;
        };
        let due = !batch.hedged && Utc::now() >= batch.hedge_at;
        match target.api.status(&remote_id).await {
            Ok(remote) if remote.state.is_terminal() => self.ended(target, &batch, &remote).await,
            Ok(_) if due => self.hedge(target, &batch, &remote_id).await,
            Ok(_) => Ok(()),
            Err(e) if !e.is_retryable() => {
                tracing::warn!(batch = %batch.id, remote = %remote_id, error = %e, "the provider no longer knows the batch; its jobs go back to the queue");
                self.give_back(&batch, "refused").await
            }
            Err(e) => {
                // The provider cannot say where it stands: the deadlines
                // still come first.
                if due {
                    self.hedge(target, &batch, &remote_id).await?;
                }
                Err(e.into())
            }
        }
    }

    /// The provider's batch ended: each open job's line ends it (or sends
    /// it back), then the batch is done.
    async fn ended(
        &self,
        target: &Target,
        batch: &HeldBatch,
        remote: &RemoteBatch,
    ) -> Result<(), StepError> {
        let ids: Vec<String> = batch
            .jobs
            .iter()
            .map(|j| j.job.message.id.to_string())
            .collect();
        let results = target.api.results(remote, &target.upstream, &ids).await?;
        for unmatched in &results.unmatched {
            tracing::warn!(batch = %batch.id, remote = %remote.id, %unmatched, "a result line matched no job");
        }
        if remote.state == RemoteState::Failed {
            tracing::warn!(batch = %batch.id, errors = ?remote.errors, "the provider failed the batch as a whole");
        }
        if !self.end_lines(target, batch, results, remote.state).await? {
            return Ok(());
        }
        self.finish(&batch.id).await?;
        target.api.forget(remote).await;
        if let Some(submitted) = batch.submitted_at {
            let took = (Utc::now() - submitted).to_std().unwrap_or_default();
            self.metrics
                .provider_batch_turnaround
                .with_label_values(&[target.provider.as_str(), remote.state.as_str()])
                .observe(took.as_secs_f64());
        }
        Ok(())
    }

    /// Cancels a batch not done in time and sends its open jobs back to
    /// the queue; it is still polled, for the lines done anyway.
    async fn hedge(
        &self,
        target: &Target,
        batch: &HeldBatch,
        remote_id: &str,
    ) -> Result<(), StepError> {
        if let Err(e) = target.api.cancel(remote_id).await {
            tracing::warn!(batch = %batch.id, error = %e, "cannot cancel a hedged provider batch; its lines may still be billed");
        }
        let open: Vec<&OpenJob> = batch.jobs.iter().filter(|j| !j.rerouted).collect();
        tracing::info!(batch = %batch.id, jobs = open.len(), "hedging a provider batch not done in time: its jobs go out in real time");
        self.reroute(batch, &open, "hedge", true, false).await
    }

    /// Sends every open job of a batch back to the queue and ends it.
    async fn give_back(&self, batch: &HeldBatch, reason: &'static str) -> Result<(), StepError> {
        let open: Vec<&OpenJob> = batch.jobs.iter().filter(|j| !j.rerouted).collect();
        self.reroute(batch, &open, reason, false, true).await?;
        let rest: Vec<_> = batch.jobs.iter().map(|j| j.job.message.id).collect();
        with_store_retry("close jobs", || {
            self.batches.store.settled(&batch.id, &rest)
        })
        .await?;
        self.finish(&batch.id).await
    }

    /// Records the provider's id of a batch this worker submitted (or
    /// found).
    async fn record_submitted(&self, id: &str, remote_id: &str) -> Result<(), StepError> {
        let owner = &self.batches.owner;
        let recorded = with_store_retry("record submission", || {
            self.batches
                .store
                .submitted(id, owner, remote_id, Utc::now())
        })
        .await?;
        if recorded {
            Ok(())
        } else {
            Err(StepError::Lost)
        }
    }

    /// Ends a batch whose jobs are all settled.
    async fn finish(&self, id: &str) -> Result<(), StepError> {
        let owner = &self.batches.owner;
        let done = with_store_retry("finish batch", || {
            self.batches.store.finish(id, owner, Utc::now())
        })
        .await?;
        if done {
            Ok(())
        } else {
            Err(StepError::Lost)
        }
    }
}
