//! Provider batches: the durable home of jobs handed to a provider's Batch
//! API (PostgreSQL, and an in-memory twin).
//!
//! RabbitMQ will not let a consumer hold a message for hours, so a job that
//! goes out in a provider batch leaves the queue: its message is acked only
//! after [`ProviderBatchStore::append`] committed it here, and from then on
//! this record is where it lives until its line is answered (or it is
//! re-routed to real time).
//!
//! A batch moves forward only:
//!
//! ```text
//! collecting ──(close_at passed, or full)──▶ submitting ──(remote id)──▶ submitted ──▶ done
//!        └───────────────(refused, or its hedge time came first)──────────────────────▶ done
//! ```
//!
//! Invariants:
//! - Any worker appends to the oldest `collecting` batch of a target that
//!   has room; one transaction adds the jobs, so a job is in one batch.
//! - A batch past `collecting` is worked on by the worker that holds its
//!   lease ([`ProviderBatchStore::claim`], `FOR UPDATE SKIP LOCKED`); every
//!   write of a holder checks it still holds the lease, and answers `false`
//!   (changing nothing) when another worker took the batch over. "Holds"
//!   means "is the batch's owner": a lease is taken over only by `claim`,
//!   which changes the owner, so the check compares no clocks; a holder
//!   whose lease ran out still writes until another worker claims the
//!   batch, which is harmless, since no one else works on it.
//! - A job row is open until its line's end was settled (stored, on the
//!   ledger, announced); [`HeldBatch::jobs`] lists the open ones only. A
//!   batch is done when the provider's batch ended and no job is open.
//! - A job is in one batch: appending a job that already is in a batch
//!   (and was not re-routed from it) leaves it there.
//!
//! Both stores fill batches by one plan (`fill`), and keep one contract
//! (`contract`, built for tests and with the `contract` feature).

mod fill;
mod memory;
mod postgres;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::{Endpoint, JobId, JobMessage};

pub use memory::MemoryProviderBatchStore;
pub use postgres::PgProviderBatchStore;

use crate::StoreError;

/// Where a batch's lines go: one provider, one model (the name callers
/// use, as routed), one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchTarget {
    pub provider: String,
    pub model: String,
    pub endpoint: Endpoint,
}

/// A job as it went into a batch: its message, and the attempt the worker
/// started it as (with the earlier attempts' calls that had left), so that
/// its line ends exactly as a real-time call of that attempt would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchedJob {
    pub message: JobMessage,
    pub attempt: u32,
    #[serde(default)]
    pub sent_before: Vec<u32>,
}

/// A job to append: the job, the bytes its line takes in the provider's
/// request, and when its batch must be hedged at the latest (its deadline
/// less the provider's real-time margin).
#[derive(Clone, Debug, PartialEq)]
pub struct NewLine {
    pub job: BatchedJob,
    pub bytes: u64,
    pub hedge_at: DateTime<Utc>,
}

/// How big a batch may grow, and how long it collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectLimits {
    pub max_lines: usize,
    pub max_bytes: u64,
    /// A batch opened at `t` closes (is due for submission) at `t + collect`.
    pub collect: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Taking jobs; submitted once `close_at` has passed.
    Collecting,
    /// Being sent to the provider (a holder that died here may or may not
    /// have created the remote batch).
    Submitting,
    /// The provider has it (`remote_id`).
    Submitted,
    /// Over: every job settled.
    Done,
}

impl BatchState {
    pub const ALL: [BatchState; 4] = [
        Self::Collecting,
        Self::Submitting,
        Self::Submitted,
        Self::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collecting => "collecting",
            Self::Submitting => "submitting",
            Self::Submitted => "submitted",
            Self::Done => "done",
        }
    }
}

impl std::str::FromStr for BatchState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown provider batch state {s:?}")))
    }
}

/// A job of a batch whose end is not settled yet.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenJob {
    pub job: BatchedJob,
    /// Sent back to the queue for real time (a hedge, a refusal, a line
    /// worth another try): its line, if the provider answers it anyway,
    /// is still recorded, as the provider bills it.
    pub rerouted: bool,
}

/// A batch as a worker holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldBatch {
    /// Sluice's id for the batch (a ULID: ids sort by creation).
    pub id: String,
    pub target: BatchTarget,
    pub state: BatchState,
    /// The provider's id, once submitted.
    pub remote_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When collecting stops.
    pub close_at: DateTime<Utc>,
    /// When the batch is hedged if the provider has not finished it: its
    /// jobs' earliest deadline less the real-time margin.
    pub hedge_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    /// Its open jobs were re-routed and the remote batch cancelled.
    pub hedged: bool,
    /// Lines in the batch (open or not).
    pub lines: u64,
    /// Its open jobs, in the order appended.
    pub jobs: Vec<OpenJob>,
}

impl HeldBatch {
    /// Whether its open jobs all went back to the queue.
    pub fn all_rerouted(&self) -> bool {
        self.jobs.iter().all(|j| j.rerouted)
    }
}

/// A batch as an operator lists it (`sluice admin batches`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchSummary {
    /// The batch, without its jobs.
    pub batch: HeldBatch,
    /// Its jobs whose ends are not settled yet.
    pub open_jobs: u64,
    /// The worker that holds its lease, if any.
    pub owner: Option<String>,
}

/// Batches not done, by provider and state (for the gauge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateCount {
    pub provider: String,
    pub state: BatchState,
    pub batches: u64,
}

#[async_trait]
pub trait ProviderBatchStore: Send + Sync + 'static {
    /// Adds `lines` to `target`'s collecting batches, in one transaction:
    /// the oldest collecting batch of the target is filled up to `limits`
    /// (lines and bytes), then new ones are opened (created now, closing
    /// at now + `limits.collect`). A batch that becomes full closes at
    /// once (`close_at` = now). A batch's `hedge_at` is the earliest of its
    /// jobs'. Returns the ids of the batches the lines went to.
    ///
    /// Lines go in in order and never back to an earlier batch: a batch
    /// that cannot take the next line (too many lines, or bytes) is full.
    /// A line bigger than `max_bytes` goes alone into a new batch.
    ///
    /// A job that already is in a batch not done, and was not re-routed
    /// from it, stays there and is not added again (its batch's id is
    /// returned): a message delivered again because the worker died
    /// between this commit and its ack must not put its job in a second
    /// batch (two provider calls), and must not fail either (it would be
    /// delivered again and again). A job named twice in `lines` goes in
    /// once. A job re-routed from its batch may be appended again; if it
    /// lands in that same batch (still collecting), its row there becomes
    /// a new line.
    async fn append(
        &self,
        target: &BatchTarget,
        lines: &[NewLine],
        limits: CollectLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;

    /// Takes up to `limit` batches for `owner` (`FOR UPDATE SKIP LOCKED`):
    /// those not done that `owner` already holds or whose lease ran out,
    /// and collecting ones whose `close_at` has passed; each is leased to
    /// `owner` until now + `lease`. Returns them with their open jobs,
    /// oldest first. A lease until `t` has run out at `t`.
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<HeldBatch>, StoreError>;

    /// Moves a collecting batch that `owner` holds to `submitting`; the
    /// batch with every job in it, read after the move (so none appended
    /// concurrently is missed), or `None` if `owner` lost it or it was not
    /// collecting.
    async fn begin_submit(&self, id: &str, owner: &str) -> Result<Option<HeldBatch>, StoreError>;

    /// Records the provider's id of a batch `owner` holds (`submitting` →
    /// `submitted`). `false`: `owner` lost the batch (or it was not
    /// submitting).
    async fn submitted(
        &self,
        id: &str,
        owner: &str,
        remote_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Marks `jobs` of a batch `owner` holds re-routed (after they were
    /// published back to the queue); `hedge` also marks the batch hedged.
    /// `false`: `owner` lost the batch.
    async fn rerouted(
        &self,
        id: &str,
        owner: &str,
        jobs: &[JobId],
        hedge: bool,
    ) -> Result<bool, StoreError>;

    /// Closes the rows of `jobs` whose ends were settled: they are no
    /// longer open.
    async fn settled(&self, id: &str, jobs: &[JobId]) -> Result<(), StoreError>;

    /// Ends a batch `owner` holds: `done`, its job rows deleted (their
    /// messages are no longer needed; the batch row stays as the record of
    /// the remote batch). `false`: `owner` lost the batch.
    ///
    /// Every job row goes, including one appended after the holder last
    /// read the batch: end a batch still collecting (refused, or hedged
    /// before submission) only after [`begin_submit`](Self::begin_submit)
    /// moved it out of `collecting` and told every job in it.
    async fn finish(&self, id: &str, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Extends every lease `owner` holds to now + `lease` (while a long
    /// step runs: a submission, a result file read); the number renewed.
    async fn renew(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Gives up `owner`'s leases (at shutdown), so that another worker
    /// takes its batches over at once. `owner` no longer holds them: its
    /// writes answer `false` from then on.
    async fn release(&self, owner: &str) -> Result<(), StoreError>;

    /// The newest `limit` batches, newest first: those not done, or every
    /// one with `all`.
    async fn list(&self, all: bool, limit: usize) -> Result<Vec<BatchSummary>, StoreError>;

    /// Batches not done, by provider and state, sorted by provider, then
    /// by state in the order a batch goes through them.
    async fn counts(&self) -> Result<Vec<StateCount>, StoreError>;
}

#[cfg(any(test, feature = "contract"))]
pub mod contract;
