//! Running one flushed batch: start its jobs in one store call (skipping
//! canceled, expired and already-finished ones), call the provider once for
//! the rest (chat, which has no array form: once per job, fanned out, each
//! job ending as its own answer arrives), store the results in one store
//! call per provider call, write the batch's usage-ledger rows, and only
//! then ack each delivery by its own tag.
//!
//! A job that ended before its delivery was acked (a crash, a redelivery)
//! has its ledger row written again from its stored record; the ledger
//! keeps the first row per job, so nothing is counted twice or lost.
//!
//! Repeated calls (see [`crate::repeats`]): the attempt that ends a job
//! also writes the rows of the attempts before it, which were orphaned; an
//! attempt answered after another delivery had ended the job writes its
//! own row, with the usage the provider reported.
//!
//! Webhooks: the end of every job that has one is published (confirmed)
//! through [`JobEvents::ended`] before its delivery is acked, in
//! [`Executor::settle_all`]; a job that ended earlier is announced again
//! (its stable webhook-id lets receivers drop the repeat).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tracing::Instrument;

use chrono::{DateTime, Utc};
use sluice_core::batching::BatchKey;
use sluice_core::job::{Outcome, StartOutcome};
use sluice_core::ledger::{queue_wait, LedgerRow};
use sluice_core::metrics::Metrics;
use sluice_core::{Endpoint, JobId, JobRecord, JobStatus};
use sluice_providers::router::Abandoned;
use sluice_providers::{BatchJob, Router};
use sluice_queue::JobEvents;
use sluice_store::jobs::JobStore;
use sluice_store::usage::UsageLedger;

use crate::answers::answered_each;
use crate::batcher::Flushed;
use crate::followers::{Ended, Followers};
use crate::pending::Pending;
use crate::repeats::Repeats;
use crate::retry::with_store_retry;

pub struct Executor {
    pub store: Arc<dyn JobStore>,
    pub router: Arc<Router>,
    pub ledger: Arc<dyn UsageLedger>,
    pub metrics: Arc<Metrics>,
    pub followers: Followers,
    /// Where job ends are announced for webhooks.
    pub events: Arc<dyn JobEvents>,
    /// Chat calls of one batch in flight at once.
    pub fanout: usize,
    /// Prices the calls a job repeated.
    pub repeats: Repeats,
    /// Told of each job settled (fair share), if there is a gate.
    pub gate: Option<crate::fair::Gate>,
}

/// A job started for this delivery: when, as which attempt, and which
/// earlier attempts' calls had left (orphaned, unless still running).
pub(crate) struct Running {
    pub(crate) pending: Pending,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) attempt: u32,
    pub(crate) sent_before: Vec<u32>,
    /// The calls for it this attempt gave up on after they reached the
    /// provider (see `repeats`), once its router call is done.
    pub(crate) abandoned: Vec<Abandoned>,
}

/// A job done with for now: ack it (with its ledger rows: its own, if it
/// has one, its repeated calls', and those of the jobs that ended with it),
/// or give it back to the queue.
pub(crate) struct Settled {
    pending: Pending,
    ack: bool,
    rows: Vec<LedgerRow>,
    followers: Vec<LedgerRow>,
    /// The ended job's record, when it has a webhook to announce it to.
    ended: Option<JobRecord>,
    /// The records of the jobs that ended with it, with webhooks.
    followers_ended: Vec<JobRecord>,
}

impl Settled {
    pub(crate) fn ack(pending: Pending, rows: Vec<LedgerRow>) -> Self {
        Self {
            pending,
            ack: true,
            rows,
            followers: Vec::new(),
            ended: None,
            followers_ended: Vec::new(),
        }
    }

    pub(crate) fn requeue(pending: Pending) -> Self {
        Self {
            pending,
            ack: false,
            rows: Vec::new(),
            followers: Vec::new(),
            ended: None,
            followers_ended: Vec::new(),
        }
    }

    /// Ends the jobs that follow this one (see [`Followers`]); if that
    /// fails, this job goes back to the queue to try again.
    async fn with_followers(mut self, followers: &Followers, ended: Ended) -> Self {
        if !self.ack {
            return self;
        }
        match followers.after(&self.pending.message, &ended).await {
            Ok(ended) => {
                self.followers = ended.rows;
                self.followers_ended = ended.announce;
            }
            Err(e) => {
                tracing::error!(job = %self.pending.message.id, error = %e, "returning job to the queue");
                self.ack = false;
            }
        }
        self
    }
}

impl Executor {
    pub async fn run(&self, batch: Flushed<Pending>) {
        let key = batch.key;
        self.metrics
            .batch_flushes
            .with_label_values(&[batch.reason.as_str()])
            .inc();
        self.metrics
            .batch_wait
            .with_label_values(&[batch.reason.as_str()])
            .observe(batch.opened.elapsed().as_secs_f64());
        let (runnable, mut settled) = self.start_all(batch.items).await;
        if !runnable.is_empty() {
            self.metrics
                .batch_size
                .with_label_values(&[key.endpoint.path()])
                .observe(runnable.len() as f64);
            settled.extend(self.call_and_finish(&key, runnable).await);
        }
        self.settle_all(settled).await;
    }

    /// Starts the jobs (in one store call); what must not run is settled.
    pub(crate) async fn start_all(&self, items: Vec<Pending>) -> (Vec<Running>, Vec<Settled>) {
        let now = Utc::now();
        let ids: Vec<JobId> = items.iter().map(|p| p.message.id).collect();
        let started = with_store_retry("start", || self.store.start_many(&ids, now)).await;
        let outcomes = match answered_each("start", ids.len(), started) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(jobs = ids.len(), error = %e, "cannot start jobs; returning them to the queue");
                return (
                    Vec::new(),
                    items.into_iter().map(Settled::requeue).collect(),
                );
            }
        };
        let mut runnable = Vec::with_capacity(items.len());
        let mut settled = Vec::new();
        for (pending, outcome) in items.into_iter().zip(outcomes) {
            match outcome {
                StartOutcome::Started {
                    attempt,
                    sent_before,
                } => {
                    if let Some(waited) = queue_wait(pending.message.enqueued_at, Some(now)) {
                        self.metrics
                            .queue_wait
                            .with_label_values(&[pending.message.priority.as_str()])
                            .observe(waited.as_secs_f64());
                    }
                    runnable.push(Running {
                        pending,
                        started_at: now,
                        attempt,
                        sent_before,
                        abandoned: Vec::new(),
                    });
                }
                StartOutcome::Expired => {
                    self.metrics
                        .jobs_finished
                        .with_label_values(&["expired"])
                        .inc();
                    settled.push(self.ended_earlier(pending, None, Vec::new()).await);
                }
                StartOutcome::Missing => {
                    let done = Settled::ack(pending, Vec::new());
                    settled.push(done.with_followers(&self.followers, Ended::NotRun).await);
                }
                StartOutcome::AlreadyDone(_) => {
                    settled.push(self.ended_earlier(pending, None, Vec::new()).await);
                }
            }
        }
        (runnable, settled)
    }

    /// A job that already ended: ack it, with its ledger rows rebuilt from
    /// the stored record (they may not have been written before a crash):
    /// its own (a canceled job has none: it billed nothing of its own), and
    /// its orphaned attempts' but `own` (this delivery's attempt, whose row
    /// is in `rows` if it was billed). A canceled job's event is published
    /// again (the API's may be lost).
    async fn ended_earlier(
        &self,
        pending: Pending,
        own: Option<u32>,
        mut rows: Vec<LedgerRow>,
    ) -> Settled {
        let id = pending.message.id;
        match with_store_retry("read", || self.store.get(id)).await {
            Ok(record) => {
                if let Some(r) = &record {
                    if r.status != JobStatus::Canceled {
                        rows.extend(LedgerRow::from_record(r, None));
                    }
                    let answered = crate::repeats::answered_by(r);
                    rows.extend(self.repeats.orphans(
                        &pending.message,
                        r.status,
                        &r.sent,
                        answered,
                        own.as_slice(),
                        r.finished_at.unwrap_or_else(Utc::now),
                    ));
                }
                let ended = Ended::from_record(record.as_ref());
                let mut done = Settled::ack(pending, rows)
                    .with_followers(&self.followers, ended)
                    .await;
                done.ended = record.filter(|r| r.webhook.is_some());
                done
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot read ended job; returning it to the queue");
                Settled::requeue(pending)
            }
        }
    }

    /// Calls the provider for the runnable jobs and ends each. Completions
    /// and embeddings go out as one array call. Chat has no array form: each
    /// job is its own call (at most `fanout` at once) and ends as soon as its
    /// answer is in, rather than when the batch's slowest call returns.
    async fn call_and_finish(&self, key: &BatchKey, runnable: Vec<Running>) -> Vec<Settled> {
        if key.endpoint != Endpoint::ChatCompletions {
            return self.call_and_finish_together(key, runnable).await;
        }
        futures::stream::iter(runnable)
            .map(|job| self.call_and_finish_together(key, vec![job]))
            .buffer_unordered(self.fanout)
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    /// One router call for `runnable`, then each job's end.
    async fn call_and_finish_together(
        &self,
        key: &BatchKey,
        mut runnable: Vec<Running>,
    ) -> Vec<Settled> {
        let jobs: Vec<BatchJob> = runnable
            .iter()
            .map(|Running { pending: p, .. }| BatchJob {
                id: p.message.id,
                body: p.message.body.clone(),
                traceparent: Some(crate::trace::outgoing(&p.trace)),
                deadline: p.message.deadline_at,
                stream: p.message.stream,
            })
            .collect();
        let called = Instant::now();
        let routed = self
            .router
            .route(&key.model, key.endpoint, &key.prefix_hash, jobs)
            .await;
        let latency_ms = u64::try_from(called.elapsed().as_millis()).unwrap_or(u64::MAX);
        for (running, abandoned) in runnable.iter_mut().zip(routed.abandoned) {
            running.abandoned = abandoned;
        }
        let outcomes: Vec<Outcome> = routed
            .ends
            .into_iter()
            .map(|result| match result {
                Ok((answer, provider)) => Outcome::Succeeded {
                    result: answer.body,
                    usage: answer.usage,
                    provider,
                    cost_micros: answer.cost_micros,
                    tier: answer.tier,
                },
                Err(e) => Outcome::Failed(e.job_error()),
            })
            .collect();
        self.finish(runnable, outcomes, Some(latency_ms)).await
    }

    /// Ends each running job with its outcome (index for index): caches
    /// the answers, stores the ends (compare-and-set), and makes each
    /// job's ledger rows, its followers' ends and its record for the
    /// webhook; [`Executor::settle_all`] then writes and acks them. The one
    /// way a job ends after its provider answered, whatever the tier.
    pub(crate) async fn finish(
        &self,
        runnable: Vec<Running>,
        outcomes: Vec<Outcome>,
        latency_ms: Option<u64>,
    ) -> Vec<Settled> {
        let now = Utc::now();
        // Cached before the jobs end, so that whoever sees an end and asks
        // again finds the answer.
        let ended: Vec<Ended> = runnable
            .iter()
            .zip(&outcomes)
            .map(|(r, outcome)| Ended::from_outcome(&r.pending.message, outcome))
            .collect();
        futures::future::join_all(
            runnable
                .iter()
                .zip(&ended)
                .map(|(r, ended)| self.followers.remember(&r.pending.message, ended)),
        )
        .await;
        let ends: Vec<(JobId, &Outcome)> = runnable
            .iter()
            .zip(&outcomes)
            .map(|(r, outcome)| (r.pending.message.id, outcome))
            .collect();
        let finished = with_store_retry("finish", || self.store.finish_many(&ends, now)).await;
        let applied = match answered_each("finish", ends.len(), finished) {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(jobs = ends.len(), error = %e, "cannot store results; returning jobs to the queue");
                return runnable
                    .into_iter()
                    .map(|r| Settled::requeue(r.pending))
                    .collect();
            }
        };
        let jobs = runnable.into_iter().zip(outcomes).zip(ended).zip(applied);
        futures::future::join_all(jobs.map(|(((running, outcome), ended), applied)| {
            let Running {
                pending,
                started_at,
                attempt,
                sent_before,
                abandoned,
            } = running;
            let span = pending.span.clone();
            async move {
                // The calls given up on after they left were billed all the
                // same, however the job ended.
                let abandoned = self.repeats.abandoned(
                    &self.metrics,
                    &pending.message,
                    attempt,
                    &abandoned,
                    &outcome,
                    now,
                );
                // Another delivery ended it first: its row stands, and
                // this call, if billed, is a repeated one.
                if !applied {
                    let mut repeated = self.repeats.superseded(
                        &self.metrics,
                        &pending.message,
                        attempt,
                        &outcome,
                        now,
                    );
                    repeated.extend(abandoned);
                    return self.ended_earlier(pending, Some(attempt), repeated).await;
                }
                tracing::debug!(status = %outcome.status(), "job ended");
                self.metrics
                    .jobs_finished
                    .with_label_values(&[outcome.status().as_str()])
                    .inc();
                self.metrics.record_job_usage(&pending.message, &outcome);
                let mut rows = vec![LedgerRow::for_job(
                    &pending.message,
                    &outcome,
                    Some(started_at),
                    now,
                    latency_ms,
                )];
                rows.extend(self.repeats.orphans_before(
                    &self.metrics,
                    &pending.message,
                    attempt,
                    &sent_before,
                    &outcome,
                    now,
                ));
                rows.extend(abandoned);
                let done = Settled::ack(pending, rows)
                    .with_followers(&self.followers, ended)
                    .await;
                self.with_record(done).await
            }
            .instrument(span)
        }))
        .await
    }

    /// Writes the ledger rows of what is acked, in one insert, publishes
    /// the webhook events of what ended, then acks (or requeues) each
    /// delivery by its own tag. If the ledger cannot be written or the
    /// events not published, the jobs go back to the queue: their
    /// redelivery finds them ended and writes their rows (and events) then.
    /// Adds the stored record of an acked job that has a webhook, for its
    /// event; if it cannot be read, the job goes back to the queue.
    async fn with_record(&self, mut done: Settled) -> Settled {
        if !done.ack || done.pending.message.webhook.is_none() {
            return done;
        }
        let id = done.pending.message.id;
        match with_store_retry("read", || self.store.get(id)).await {
            Ok(record) => done.ended = record,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot read ended job; returning it to the queue");
                done.ack = false;
            }
        }
        done
    }

    pub(crate) async fn settle_all(&self, settled: Vec<Settled>) {
        let rows: Vec<LedgerRow> = settled
            .iter()
            .filter(|s| s.ack)
            .flat_map(|s| s.rows.iter().chain(&s.followers).cloned())
            .collect();
        let ledger_ok = rows.is_empty()
            || match with_store_retry("ledger", || self.ledger.record(&rows)).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, rows = rows.len(), "cannot write the usage ledger; requeueing");
                    false
                }
            };
        let ended: Vec<JobRecord> = settled
            .iter()
            .filter(|s| s.ack)
            .flat_map(|s| s.ended.iter().chain(&s.followers_ended).cloned())
            .collect();
        let events_ok = ended.is_empty()
            || match self.events.ended(&ended).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, jobs = ended.len(), "cannot publish webhook events; requeueing");
                    false
                }
            };
        futures::future::join_all(settled.into_iter().map(|s| async move {
            let id = s.pending.message.id;
            let completion: u64 = s
                .rows
                .iter()
                .filter(|r| r.job_id == id)
                .map(|r| r.usage.completion_tokens)
                .sum();

            self.metrics.inflight_jobs.dec();
            let has_rows = !s.rows.is_empty() || !s.followers.is_empty();
            let announced = events_ok || (s.ended.is_none() && s.followers_ended.is_empty());
            let result = if s.ack && announced && (ledger_ok || !has_rows) {
                s.pending.delivery.ack().await
            } else {
                s.pending.delivery.requeue().await
            };
            if let Err(e) = result {
                // The channel is gone: the broker redelivers, and the job's
                // stored end makes that redelivery a no-op.
                tracing::warn!(job = %id, error = %e, "settling the delivery failed");
            }
            if let Some(gate) = &self.gate {
                gate.ended(id, completion);
            }
        }))
        .await;
    }
}
