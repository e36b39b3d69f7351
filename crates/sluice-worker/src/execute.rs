//! Running one flushed batch: start each job (skipping canceled, expired
//! and already-finished ones), call the provider once for the rest, store
//! each result, and only then ack each delivery by its own tag.

use std::sync::Arc;

use chrono::Utc;
use sluice_core::batching::BatchKey;
use sluice_core::job::{Outcome, StartOutcome};
use sluice_core::metrics::Metrics;
use sluice_core::{JobError, JobMessage};
use sluice_providers::{BatchJob, Router};
use sluice_queue::Delivery;
use sluice_store::jobs::JobStore;

use crate::batcher::Flushed;
use crate::retry::with_store_retry;

/// A job the worker holds: its message and the delivery to settle.
pub struct Pending {
    pub message: JobMessage,
    pub delivery: Delivery,
}

pub struct Executor {
    pub store: Arc<dyn JobStore>,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
}

impl Executor {
    pub async fn run(&self, batch: Flushed<Pending>) {
        let key = batch.key;
        self.metrics
            .batch_flushes
            .with_label_values(&[batch.reason.as_str()])
            .inc();
        let runnable = self.start_all(batch.items).await;
        if runnable.is_empty() {
            return;
        }
        self.metrics
            .batch_size
            .with_label_values(&[key.endpoint.path()])
            .observe(runnable.len() as f64);
        self.call_and_finish(&key, runnable).await;
    }

    /// Starts each job (concurrently); settles the ones that must not run.
    async fn start_all(&self, items: Vec<Pending>) -> Vec<Pending> {
        let now = Utc::now();
        let started = futures::future::join_all(items.into_iter().map(|pending| async move {
            let id = pending.message.id;
            let outcome = with_store_retry("start", || self.store.start(id, now)).await;
            (pending, outcome)
        }))
        .await;
        let mut runnable = Vec::with_capacity(started.len());
        let mut settle = Vec::new();
        for (pending, outcome) in started {
            match outcome {
                Ok(StartOutcome::Started { .. }) => {
                    let waited = (now - pending.message.enqueued_at)
                        .num_milliseconds()
                        .max(0);
                    self.metrics
                        .queue_wait
                        .with_label_values(&[pending.message.priority.as_str()])
                        .observe(waited as f64 / 1000.0);
                    runnable.push(pending);
                }
                Ok(StartOutcome::Expired) => {
                    self.metrics
                        .jobs_finished
                        .with_label_values(&["expired"])
                        .inc();
                    settle.push((pending, true));
                }
                Ok(StartOutcome::AlreadyDone(_) | StartOutcome::Missing) => {
                    settle.push((pending, true))
                }
                Err(e) => {
                    tracing::error!(job = %pending.message.id, error = %e, "cannot start job; returning it to the queue");
                    settle.push((pending, false));
                }
            }
        }
        self.settle_all(settle).await;
        runnable
    }

    async fn call_and_finish(&self, key: &BatchKey, runnable: Vec<Pending>) {
        let jobs: Vec<BatchJob> = runnable
            .iter()
            .map(|p| BatchJob {
                id: p.message.id,
                body: p.message.body.clone(),
            })
            .collect();
        let results = self
            .router
            .call(&key.model, key.endpoint, &key.prefix_hash, jobs)
            .await;
        let now = Utc::now();
        let finished = futures::future::join_all(runnable.into_iter().zip(results).map(
            |(pending, result)| async move {
                let outcome = match result {
                    Ok((answer, provider)) => Outcome::Succeeded {
                        result: answer.body,
                        usage: answer.usage,
                        provider,
                        cost_micros: answer.cost_micros,
                    },
                    Err(e) => Outcome::Failed(JobError::new(e.kind(), e.to_string())),
                };
                let id = pending.message.id;
                let stored = with_store_retry("finish", || self.store.finish(id, &outcome, now)).await;
                match stored {
                    Ok(applied) => {
                        if applied {
                            self.metrics
                                .jobs_finished
                                .with_label_values(&[outcome.status().as_str()])
                                .inc();
                        }
                        (pending, true)
                    }
                    Err(e) => {
                        tracing::error!(job = %id, error = %e, "cannot store result; returning job to the queue");
                        (pending, false)
                    }
                }
            },
        ))
        .await;
        self.settle_all(finished).await;
    }

    /// Acks (`true`) or requeues (`false`) each delivery, by its own tag.
    async fn settle_all(&self, settle: Vec<(Pending, bool)>) {
        futures::future::join_all(settle.into_iter().map(|(pending, ack)| async move {
            if ack {
                self.settle_ack(pending).await;
            } else {
                self.settle_requeue(pending).await;
            }
        }))
        .await;
    }

    async fn settle_ack(&self, pending: Pending) {
        let id = pending.message.id;
        self.metrics.inflight_jobs.dec();
        if let Err(e) = pending.delivery.ack().await {
            // The channel is gone: the broker will redeliver, and the job's
            // stored end makes that redelivery a no-op.
            tracing::warn!(job = %id, error = %e, "ack failed");
        }
    }

    async fn settle_requeue(&self, pending: Pending) {
        let id = pending.message.id;
        self.metrics.inflight_jobs.dec();
        if let Err(e) = pending.delivery.requeue().await {
            tracing::warn!(job = %id, error = %e, "requeue failed");
        }
    }
}
