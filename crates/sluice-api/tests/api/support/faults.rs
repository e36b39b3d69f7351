//! Test-only wrappers around the in-memory queue and job store that fail
//! on demand, so that a test can watch the API meet a broker that refuses
//! or never confirms, and a store that is down or slow. Both pass every
//! call through to the twin they wrap until told otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::job::{CancelOutcome, Outcome, StartOutcome};
use sluice_core::{JobId, JobRecord, JobStatus, Priority};
use sluice_queue::{DeliveryStream, JobQueue, MemoryQueue, Outgoing, QueueError, Source};
use sluice_store::jobs::{IdempotencyClaim, JobStore, MemoryJobStore, Watch};
use sluice_store::StoreError;
use tokio::sync::{Notify, Semaphore};

/// What the broker does with the next publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueFault {
    /// Confirms every message.
    None,
    /// Unreachable: every publish fails and `is_ready` is false.
    Down,
    /// Takes the messages but never confirms them: the API hears what the
    /// RabbitMQ queue reports once its confirm timeout passes.
    NoConfirm,
    /// Refuses (nacks) only the messages of this priority class.
    Nack(Priority),
}

/// A [`MemoryQueue`] whose publishes can fail; it remembers the job id of
/// every message it did not confirm.
pub struct FaultyQueue {
    inner: Arc<MemoryQueue>,
    fault: Mutex<QueueFault>,
    unconfirmed: Mutex<Vec<String>>,
}

impl FaultyQueue {
    pub fn new(inner: Arc<MemoryQueue>) -> Self {
        Self {
            inner,
            fault: Mutex::new(QueueFault::None),
            unconfirmed: Mutex::default(),
        }
    }

    pub fn set(&self, fault: QueueFault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// The ids of the jobs whose publish was not confirmed, in order.
    pub fn unconfirmed(&self) -> Vec<String> {
        self.unconfirmed.lock().unwrap().clone()
    }

    fn verdict(fault: QueueFault, message: &Outgoing) -> Option<QueueError> {
        match fault {
            QueueFault::None => None,
            QueueFault::Down => Some(QueueError::Unavailable("connection refused".into())),
            QueueFault::NoConfirm => Some(QueueError::ConfirmTimeout(Duration::from_secs(5))),
            QueueFault::Nack(p) if p == message.priority => Some(QueueError::Nacked),
            QueueFault::Nack(_) => None,
        }
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn publish(&self, messages: Vec<Outgoing>) -> Vec<Result<(), QueueError>> {
        let fault = *self.fault.lock().unwrap();
        let verdicts: Vec<Option<QueueError>> =
            messages.iter().map(|m| Self::verdict(fault, m)).collect();
        let mut passed = Vec::new();
        for (message, verdict) in messages.into_iter().zip(&verdicts) {
            match verdict {
                None => passed.push(message),
                Some(_) => {
                    let id = message.headers.get("job-id").cloned().unwrap_or_default();
                    self.unconfirmed.lock().unwrap().push(id);
                }
            }
        }
        let mut confirms = self.inner.publish(passed).await.into_iter();
        verdicts
            .into_iter()
            .map(|verdict| match verdict {
                Some(e) => Err(e),
                None => confirms
                    .next()
                    .unwrap_or_else(|| Err(QueueError::Unavailable("no confirm".into()))),
            })
            .collect()
    }

    async fn consume(
        &self,
        source: Source,
        prefetch: u16,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<DeliveryStream, QueueError> {
        self.inner.consume(source, prefetch, stop).await
    }

    async fn depth(&self, source: Source) -> Result<u64, QueueError> {
        self.inner.depth(source).await
    }

    async fn is_ready(&self) -> bool {
        *self.fault.lock().unwrap() != QueueFault::Down && self.inner.is_ready().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Holds the next record write until released (see [`FaultyStore::hold_next_create`]).
pub struct Held {
    entered: Arc<Notify>,
    gate: Arc<Semaphore>,
}

impl Held {
    /// Returns once the held write has started (and is waiting).
    pub async fn entered(&self) {
        self.entered.notified().await;
    }

    /// Lets the held write go on.
    pub fn release(self) {
        self.gate.add_permits(1);
    }
}

/// A [`MemoryJobStore`] that can be down (every call fails) or hold the
/// next record write until the test releases it.
pub struct FaultyStore {
    inner: Arc<MemoryJobStore>,
    down: AtomicBool,
    hold: Mutex<Option<(Arc<Notify>, Arc<Semaphore>)>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<MemoryJobStore>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            hold: Mutex::default(),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next `create` waits until the returned [`Held`] is released.
    pub fn hold_next_create(&self) -> Held {
        let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
        *self.hold.lock().unwrap() = Some((Arc::clone(&entered), Arc::clone(&gate)));
        Held { entered, gate }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("redis: connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn create(&self, jobs: &[JobRecord]) -> Result<(), StoreError> {
        let held = self.hold.lock().unwrap().take();
        if let Some((entered, gate)) = held {
            entered.notify_one();
            let _permit = gate.acquire().await.unwrap();
        }
        self.check()?;
        self.inner.create(jobs).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }

    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<Option<JobStatus>>, StoreError> {
        self.check()?;
        self.inner.statuses(ids).await
    }

    async fn start_many(
        &self,
        ids: &[JobId],
        now: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>, StoreError> {
        self.check()?;
        self.inner.start_many(ids, now).await
    }

    async fn finish_many(
        &self,
        ends: &[(JobId, &Outcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        self.inner.finish_many(ends, now).await
    }

    async fn mark_sent(&self, ids: &[JobId]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.mark_sent(ids).await
    }

    async fn mark_waiting(
        &self,
        ids: &[JobId],
        tier: Option<sluice_core::Tier>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.mark_waiting(ids, tier).await
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        self.check()?;
        self.inner.cancel(id, now).await
    }

    fn watch(&self, id: JobId) -> Watch {
        self.inner.watch(id)
    }

    async fn append_chunks(
        &self,
        logs: &[(JobId, Vec<sluice_core::stream::StreamEntry>)],
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append_chunks(logs).await
    }

    async fn read_chunks(
        &self,
        id: JobId,
        after: Option<&sluice_store::jobs::ChunkPosition>,
        limit: usize,
    ) -> Result<
        Vec<(
            sluice_store::jobs::ChunkPosition,
            sluice_core::stream::StreamEntry,
        )>,
        StoreError,
    > {
        self.check()?;
        self.inner.read_chunks(id, after, limit).await
    }

    async fn claim_idempotency(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        job: JobId,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.check()?;
        self.inner
            .claim_idempotency(tenant, key, fingerprint, job, ttl)
            .await
    }

    async fn release_idempotency(
        &self,
        tenant: &str,
        key: &str,
        job: JobId,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_idempotency(tenant, key, job).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
}
