//! Consumer loops: one per priority queue feeding the batcher, and one on
//! the dead-letter queue that marks its jobs failed (and charges the calls
//! their deliveries made, which no answer closed). Each loop resumes
//! (reconnecting, see [`consume_until_stopped`]) when its stream ends,
//! until shutdown.

use std::sync::Arc;

use chrono::Utc;
use sluice_core::batching::{estimate_tokens, prompt_text, BatchKey};
use sluice_core::config::WorkerConfig;
use sluice_core::job::Outcome;
use sluice_core::metrics::Metrics;
use sluice_core::{JobError, JobId, JobMessage, JobRecord};
use sluice_queue::{consume_until_stopped, Delivery, JobEvents, JobQueue, QueueError, Source};
use sluice_store::jobs::JobStore;
use sluice_store::usage::UsageLedger;
use sluice_store::StoreError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batcher::Incoming;
use crate::pending::Pending;
use crate::provider_batch::stage::{Staged, STAGE_WAIT};
use crate::provider_batch::ProviderBatches;
use crate::repeats::Repeats;
use crate::retry::with_store_retry;

/// Why a dead-lettered job could not be settled (it is requeued).
#[derive(Debug, thiserror::Error)]
enum DeadLetterError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot publish its webhook event: {0}")]
    Publish(#[from] QueueError),
}

pub struct Consumers {
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub metrics: Arc<Metrics>,
    pub config: WorkerConfig,
    pub events: Arc<dyn JobEvents>,
    /// Where a dead-lettered job's orphaned calls are charged.
    pub ledger: Arc<dyn UsageLedger>,
    pub repeats: Repeats,
    /// Where jobs that go into provider batches are planned (none: off).
    pub batches: Option<Arc<ProviderBatches>>,
}

/// Where an admitted job goes: the micro-batcher (real time and flex), or
/// the stage into provider batches.
#[derive(Clone)]
pub struct Routes {
    pub realtime: mpsc::Sender<Incoming<Pending>>,
    pub staged: Option<mpsc::Sender<Incoming<Staged>>>,
}

/// The error kind of a job its dead letter ended.
const DEAD_LETTERED: &str = "dead_lettered";

/// The header that carries a job's id, readable even when the body is not.
pub const JOB_ID_HEADER: &str = "job-id";

fn job_id_of(delivery: &Delivery) -> Option<JobId> {
    delivery.headers.get(JOB_ID_HEADER)?.parse().ok()
}

impl Consumers {
    /// Consumes `source` into `tx` until `stop`.
    pub async fn jobs(
        &self,
        source: Source,
        prefetch: u16,
        routes: Routes,
        stop: CancellationToken,
    ) {
        consume_until_stopped(self.queue.as_ref(), source, prefetch, &stop, |delivery| {
            self.admit(delivery, &routes)
        })
        .await;
    }

    /// Marks each dead-lettered job failed, then acks it, until `stop`.
    pub async fn dead_letters(&self, stop: CancellationToken) {
        let prefetch = 32;
        consume_until_stopped(
            self.queue.as_ref(),
            Source::DeadLetters,
            prefetch,
            &stop,
            |d| self.bury(d),
        )
        .await;
    }

    /// Decodes a delivery and hands it to the batcher; a poison message is
    /// marked failed (when its id can be read) and dead-lettered.
    async fn admit(&self, delivery: Delivery, routes: &Routes) {
        self.metrics.inflight_jobs.inc();
        let message = match JobMessage::decode(&delivery.body) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("the job's message could not be decoded: {e}");
                tracing::error!(headers = ?delivery.headers, %reason, "poison message");
                if let Some(id) = job_id_of(&delivery) {
                    let failed = Outcome::Failed(JobError::new("undecodable_message", &reason));
                    let _ = with_store_retry("fail poison", || {
                        self.store.finish(id, &failed, Utc::now())
                    })
                    .await;
                }
                self.metrics.inflight_jobs.dec();
                if let Err(e) = delivery.dead_letter().await {
                    tracing::warn!(error = %e, "dead-lettering failed");
                }
                return;
            }
        };
        // When the job just taken was accepted: while its queue holds ready
        // jobs, the age of the oldest one is at most now minus this.
        self.metrics
            .queue_taken_enqueued
            .with_label_values(&[message.priority.as_str()])
            .set(message.enqueued_at.timestamp_millis() as f64 / 1000.0);
        let key = BatchKey::of(&message, self.config.prefix_chars);
        let planned = match (&self.batches, &routes.staged) {
            (Some(batches), Some(staged)) => batches
                .targets
                .plan(&message, Utc::now())
                .map(|planned| (planned, staged)),
            _ => None,
        };
        if let Some((planned, staged)) = planned {
            // One append takes every staged job of a model and endpoint.
            let key = BatchKey {
                prefix_hash: String::new(),
                params: String::new(),
                ..key
            };
            let incoming = Incoming {
                key,
                tokens: planned.bytes,
                max_wait: STAGE_WAIT,
                item: Staged {
                    pending: Pending::new(message, delivery),
                    planned,
                },
            };
            if let Err(mpsc::error::SendError(lost)) = staged.send(incoming).await {
                self.metrics.inflight_jobs.dec();
                let _ = lost.item.pending.delivery.requeue().await;
            }
            return;
        }
        let incoming = Incoming {
            key,
            tokens: estimate_tokens(&prompt_text(message.endpoint, &message.body)),
            max_wait: self.config.max_wait_ms.for_priority(message.priority),
            item: Pending::new(message, delivery),
        };
        if let Err(mpsc::error::SendError(lost)) = routes.realtime.send(incoming).await {
            // The batcher is gone (shutting down): give the job back.
            self.metrics.inflight_jobs.dec();
            let _ = lost.item.delivery.requeue().await;
        }
    }

    /// Writes the ledger rows of a dead-lettered job's sent attempts, when
    /// the dead letter ended it (a job that ended otherwise had them
    /// written by whoever ended it). A message that cannot be decoded has
    /// no body to price, and made no call. `fresh`: this dead letter ended
    /// the job (count the calls in the metric; a redelivered dead letter
    /// only writes the rows again).
    async fn charge_orphans(
        &self,
        record: &JobRecord,
        delivery: &Delivery,
        fresh: bool,
    ) -> Result<(), StoreError> {
        let Ok(message) = JobMessage::decode(&delivery.body) else {
            return Ok(());
        };
        let dead_lettered = record
            .error
            .as_ref()
            .is_some_and(|e| e.kind == DEAD_LETTERED);
        if !dead_lettered {
            return Ok(());
        }
        let finished_at = record.finished_at.unwrap_or_else(Utc::now);
        let rows = self.repeats.orphans(
            &message,
            record.status,
            &record.sent,
            None,
            &[],
            finished_at,
        );
        for row in rows.iter().filter(|_| fresh) {
            crate::repeats::count(&self.metrics, row, "orphaned");
        }
        if rows.is_empty() {
            return Ok(());
        }
        with_store_retry("ledger", || self.ledger.record(&rows)).await
    }

    /// Charges a dead-lettered job's unanswered calls and publishes its
    /// webhook event (if it has a webhook), from its record read once.
    async fn settle_dead(
        &self,
        id: JobId,
        delivery: &Delivery,
        fresh: bool,
    ) -> Result<(), DeadLetterError> {
        let Some(record) = with_store_retry("read", || self.store.get(id)).await? else {
            return Ok(());
        };
        // Its deliveries' calls that left were never answered: each is
        // charged (again, harmlessly, if this is a redelivery).
        self.charge_orphans(&record, delivery, fresh).await?;
        if record.webhook.is_some() {
            self.events.ended(&[record]).await?;
        }
        Ok(())
    }

    /// A dead-lettered message: its job failed for good.
    async fn bury(&self, delivery: Delivery) {
        let id =
            job_id_of(&delivery).or_else(|| JobMessage::decode(&delivery.body).ok().map(|m| m.id));
        let Some(id) = id else {
            tracing::error!(headers = ?delivery.headers, "dead letter without a job id; dropping it");
            let _ = delivery.ack().await;
            return;
        };
        let failed = Outcome::Failed(JobError::new(
            DEAD_LETTERED,
            "the job's message could not be processed: it was delivered too many times or could not be decoded",
        ));
        match with_store_retry("fail dead letter", || {
            self.store.finish(id, &failed, Utc::now())
        })
        .await
        {
            Ok(applied) => {
                if applied {
                    self.metrics
                        .jobs_finished
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::error!(job = %id, "job dead-lettered; marked failed");
                }
                if let Err(e) = self.settle_dead(id, &delivery, applied).await {
                    tracing::warn!(job = %id, error = %e, "cannot charge or announce a dead-lettered job; requeueing");
                    let _ = delivery.requeue().await;
                    return;
                }
                let _ = delivery.ack().await;
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot mark dead letter failed; requeueing");
                let _ = delivery.requeue().await;
            }
        }
    }
}
