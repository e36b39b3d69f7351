//! Group commit for submissions: concurrent requests' jobs are written to
//! the store and published together, so that a burst of single-job
//! requests costs a few store pipelines and publish calls instead of one
//! of each per job. Nothing waits for company: a flush takes whatever is
//! queued at that moment, so a lone request goes out at once.
//!
//! Every job record the API writes goes through here: the queued jobs it
//! publishes, and the records of jobs that join one in flight or are
//! answered from the cache (which publish nothing).
//!
//! Invariant kept: each job's record is written before its message is
//! published, and a caller hears back only after the broker's confirm for
//! its own jobs (or the failure), one answer per message.

use std::sync::Arc;

use sluice_core::metrics::Metrics;
use sluice_core::JobRecord;
use sluice_queue::{JobQueue, Outgoing, QueueError};
use sluice_store::jobs::JobStore;
use sluice_store::StoreError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::task::TaskTracker;

use crate::problem::ApiError;

/// Most jobs in one flush (one store pipeline, one publish call).
const MAX_FLUSH_JOBS: usize = 1000;
/// Flushes in flight at once: enough to keep the broker's confirms
/// pipelined while the next group forms, few enough that under load the
/// groups grow (fewer store pipelines, fuller packs). 4 against 16 took
/// single-job requests from 47–60% to 64–78% of the throughput target in
/// `sluice-bench throughput`, at a lower p50.
const FLUSHES_IN_FLIGHT: usize = 4;
/// Submissions waiting for a flush; a full queue makes callers wait.
const QUEUE_DEPTH: usize = 4096;

type Reply = Result<Vec<Result<(), QueueError>>, Arc<StoreError>>;

/// Why a job was not published.
#[derive(Debug)]
pub enum NotPublished {
    /// The records could not be written; nothing was published.
    NotStored(Arc<StoreError>),
    /// The broker did not confirm the job's message.
    NotConfirmed(QueueError),
}

struct Submission {
    records: Vec<JobRecord>,
    outgoing: Vec<Outgoing>,
    reply: oneshot::Sender<Reply>,
}

/// The submitting side; dropping every clone stops the flusher after it
/// flushed what it holds.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Submission>,
}

impl Ingest {
    /// Starts the flusher on `tasks`.
    pub fn start(
        queue: Arc<dyn JobQueue>,
        store: Arc<dyn JobStore>,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let flushes = tasks.clone();
        tasks.spawn(run(rx, queue, store, metrics, flushes));
        Self { tx }
    }

    /// Stores `records`, then publishes `outgoing` (one message per
    /// record, same order): the broker's answer for each job, exactly one
    /// per record.
    pub async fn publish(
        &self,
        records: Vec<JobRecord>,
        outgoing: Vec<Outgoing>,
    ) -> Vec<Result<(), NotPublished>> {
        let n = records.len();
        match self.send(records, outgoing).await {
            Ok(confirms) => confirms
                .into_iter()
                .map(|c| c.map_err(NotPublished::NotConfirmed))
                .collect(),
            Err(e) => (0..n)
                .map(|_| Err(NotPublished::NotStored(Arc::clone(&e))))
                .collect(),
        }
    }

    /// Stores `records` (jobs that publish nothing: joined, or answered).
    pub async fn create(&self, records: Vec<JobRecord>) -> Result<(), ApiError> {
        self.send(records, Vec::new())
            .await
            .map(drop)
            .map_err(|e| ApiError::StoreUnavailable(e.to_string()))
    }

    async fn send(&self, records: Vec<JobRecord>, outgoing: Vec<Outgoing>) -> Reply {
        let (reply, answer) = oneshot::channel();
        let n = outgoing.len();
        let unavailable = || {
            Ok((0..n)
                .map(|_| Err(QueueError::Unavailable("the API is shutting down".into())))
                .collect())
        };
        if self
            .tx
            .send(Submission {
                records,
                outgoing,
                reply,
            })
            .await
            .is_err()
        {
            return unavailable();
        }
        answer.await.unwrap_or_else(|_| unavailable())
    }
}

async fn run(
    mut rx: mpsc::Receiver<Submission>,
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn JobStore>,
    metrics: Arc<Metrics>,
    flushes: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(FLUSHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        let mut jobs = group[0].outgoing.len();
        while jobs < MAX_FLUSH_JOBS {
            match rx.try_recv() {
                Ok(next) => {
                    jobs += next.outgoing.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let (queue, store, metrics) =
            (Arc::clone(&queue), Arc::clone(&store), Arc::clone(&metrics));
        flushes.spawn(async move {
            flush(group, queue.as_ref(), store.as_ref(), &metrics).await;
            drop(slot);
        });
    }
}

async fn flush(
    group: Vec<Submission>,
    queue: &dyn JobQueue,
    store: &dyn JobStore,
    metrics: &Metrics,
) {
    let records: Vec<JobRecord> = group
        .iter()
        .flat_map(|s| s.records.iter().cloned())
        .collect();
    if let Err(e) = store.create(&records).await {
        let e = Arc::new(e);
        for s in group {
            let _ = s.reply.send(Err(Arc::clone(&e)));
        }
        return;
    }
    let outgoing: Vec<Outgoing> = group
        .iter()
        .flat_map(|s| s.outgoing.iter().cloned())
        .collect();
    let sent = outgoing.len();
    let mut confirms = if sent == 0 {
        Vec::new()
    } else {
        queue.publish(outgoing).await
    };
    // One answer per message: the queue owes one each, and a message it
    // said nothing about was not confirmed.
    confirms.resize_with(sent, || {
        Err(QueueError::Unavailable(
            "the broker did not answer for this message".into(),
        ))
    });
    for confirm in &confirms {
        let outcome = match confirm {
            Ok(()) => "ok",
            Err(e) => e.confirm_outcome(),
        };
        metrics.publish_confirms.with_label_values(&[outcome]).inc();
    }
    let mut confirms = confirms.into_iter();
    for s in group {
        let mine: Vec<_> = confirms.by_ref().take(s.outgoing.len()).collect();
        let _ = s.reply.send(Ok(mine));
    }
}
