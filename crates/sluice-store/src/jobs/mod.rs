//! Job records and their forward-only state changes.
//!
//! Every change of status is a compare-and-set ([`JobStore::start_many`],
//! [`JobStore::finish_many`], [`JobStore::cancel`]): a second finish of the
//! same job is a no-op that reports `false`, never an overwrite. Each change
//! to a terminal status notifies the job's watchers ([`JobStore::watch`]).
//! The `_many` forms take a whole batch, so that a worker changes its
//! batch's jobs in one round trip, not one per job.
//!
//! A job that streams also has a chunk log ([`JobStore::append_chunks`],
//! [`JobStore::read_chunks`]): what its provider call has sent so far, for
//! whichever API process streams it to its caller.

mod codec;
mod memory;
mod redis;
mod scripts;
mod waiters;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::job::{CancelOutcome, Outcome, StartOutcome};
use sluice_core::stream::StreamEntry;
use sluice_core::{JobId, JobRecord, JobStatus, Tier};

pub use memory::MemoryJobStore;
pub use redis::{CompletionListener, RedisJobStore, RedisOptions};
pub use waiters::{WaiterHub, Watch};

use crate::StoreError;

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Writes fresh (queued) records; each is kept for the store's retention.
    async fn create(&self, jobs: &[JobRecord]) -> Result<(), StoreError>;

    /// The record as stored, whoever owns it; callers check the tenant.
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Each job's status as stored (`None` for a job that is gone), in
    /// order, in one round trip: how a batch driver follows its lines.
    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<Option<JobStatus>>, StoreError>;

    /// Moves each queued (or redelivered running) job to running, unless
    /// its deadline passed while it was queued: then it becomes expired.
    /// One outcome per id, in order.
    async fn start_many(
        &self,
        ids: &[JobId],
        now: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>, StoreError>;

    /// Ends each job; `false` for a job that had already ended (or is
    /// gone): the earlier end stands. One answer per job, in order.
    async fn finish_many(
        &self,
        ends: &[(JobId, &Outcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Marks each running job's current attempt as sent (its provider call
    /// is about to leave; see `JobRecord::sent`); a job not running is left
    /// alone.
    async fn mark_sent(&self, ids: &[JobId]) -> Result<(), StoreError>;

    /// Marks what each running job waits on: `Some(tier)` (a provider
    /// batch: the record shows the tier while it waits, and the job may
    /// still be canceled), or `None` (sent back to the queue for a call in
    /// real time: no longer cancelable once running). A job not running is
    /// left alone.
    async fn mark_waiting(&self, ids: &[JobId], tier: Option<Tier>) -> Result<(), StoreError>;

    /// [`JobStore::start_many`] for one job.
    async fn start(&self, id: JobId, now: DateTime<Utc>) -> Result<StartOutcome, StoreError> {
        let mut outcomes = self.start_many(&[id], now).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("start answered for no job".into()))
    }

    /// [`JobStore::finish_many`] for one job.
    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut ended = self.finish_many(&[(id, outcome)], now).await?;
        ended
            .pop()
            .ok_or_else(|| StoreError::Corrupt("finish answered for no job".into()))
    }

    /// Cancels a job that is still queued.
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError>;

    /// Starts watching a job for its end, or for more of its chunk log.
    /// Watch first, then read, then wait: a write between the read and
    /// the wait still wakes.
    fn watch(&self, id: JobId) -> Watch;

    /// Appends entries to each job's chunk log (a streaming call's chunks,
    /// `sluice_core::stream`), in order, and wakes its watchers. A log is
    /// kept for [`CHUNK_LOG_TTL`] after its last append.
    async fn append_chunks(&self, logs: &[(JobId, Vec<StreamEntry>)]) -> Result<(), StoreError>;

    /// The entries of `id`'s chunk log after `after` (`None`: from the
    /// start), each with its position, at most `limit`.
    async fn read_chunks(
        &self,
        id: JobId,
        after: Option<&ChunkPosition>,
        limit: usize,
    ) -> Result<Vec<(ChunkPosition, StreamEntry)>, StoreError>;

    /// Claims an `Idempotency-Key` of `tenant` for `job`, for `ttl`: the
    /// first claim wins, a later one learns the job (and request
    /// fingerprint) that holds it.
    async fn claim_idempotency(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        job: JobId,
        ttl: std::time::Duration,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Gives a claim back (the request it was for, `job`'s, was not
    /// accepted, or died before it stored its job); a claim held for
    /// another job is left alone.
    async fn release_idempotency(
        &self,
        tenant: &str,
        key: &str,
        job: JobId,
    ) -> Result<(), StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;
}

/// How long a job's chunk log is kept after its last append: its readers
/// are streaming it to their callers as it is written.
pub const CHUNK_LOG_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// Where an entry stands in a chunk log (a Redis stream entry id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPosition(pub String);

/// What claiming an idempotency key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    Claimed,
    /// Held by an earlier request for this job, with that fingerprint.
    Held {
        job: JobId,
        fingerprint: String,
    },
}

fn encode_claim(job: JobId, fingerprint: &str) -> String {
    format!("{job}|{fingerprint}")
}

fn decode_claim(value: &str) -> Result<IdempotencyClaim, StoreError> {
    let (job, fingerprint) = value
        .split_once('|')
        .ok_or_else(|| StoreError::Corrupt(format!("idempotency claim {value:?}")))?;
    let job = job
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("idempotency claim {value:?}")))?;
    Ok(IdempotencyClaim::Held {
        job,
        fingerprint: fingerprint.to_owned(),
    })
}

/// The error an expired job carries.
/// Reads a job, first expiring it if it is still queued past its deadline,
/// so that a caller never sees a queued job whose deadline has passed.
pub async fn get_current(
    store: &dyn JobStore,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Option<JobRecord>, StoreError> {
    let Some(record) = store.get(id).await? else {
        return Ok(None);
    };
    let overdue =
        record.status == JobStatus::Queued && record.deadline_at.is_some_and(|d| now >= d);
    if !overdue {
        return Ok(Some(record));
    }
    store.finish(id, &Outcome::Expired, now).await?;
    store.get(id).await
}

#[cfg(test)]
mod contract;
