//! Batches of the OpenAI-compatible Batch API (`/v1/batches`): a tenant's
//! input file run line by line, each line a job. [`BatchStore`]:
//! [`PgBatchStore`] keeps them in PostgreSQL (`migrations/0012_batches.sql`),
//! where every API replica drives them; [`MemoryBatchStore`] in process
//! memory, for tests and `sluice dev`.
//!
//! Invariants:
//! - **One driver at a time.** A batch still moving (validating, in
//!   progress, finalizing, cancelling) is worked on only by the process
//!   holding its lease ([`BatchStore::claim`]); every write of a holder
//!   names it and does nothing (answering `false`) once another holds it.
//!   A killed driver's batches are taken over when its lease runs out.
//! - **Lines carry ids, never positions.** Each line is stored with its
//!   caller's `custom_id` and the id of the job that runs it, before any
//!   job is created ([`BatchStore::begin`]); answers are matched by id.
//! - **Status moves forward only**: validating → in_progress → finalizing
//!   → completed or expired; validating → failed; validating or
//!   in_progress → cancelling → cancelled.

mod memory;
mod postgres;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::JobId;

pub use memory::MemoryBatchStore;
pub use postgres::PgBatchStore;

use crate::StoreError;

/// Where a batch is (OpenAI's statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [Self; 8] = [
        Self::Validating,
        Self::Failed,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown batch status {s:?}")))
    }

    /// Whether a driver still has work on it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Validating | Self::InProgress | Self::Finalizing | Self::Cancelling
        )
    }
}

/// Why a batch failed, one entry per bad line (OpenAI's `errors.data`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub code: String,
    pub message: String,
    /// 1-based, as OpenAI numbers lines; none for an error of the whole file.
    pub line: Option<u64>,
    pub param: Option<String>,
}

/// A batch as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `batch_` and a ULID.
    pub id: String,
    pub tenant_id: String,
    /// Who created it: what its lines are submitted as.
    pub tenant_name: String,
    pub key_id: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Option<serde_json::Value>,
    pub status: BatchStatus,
    pub errors: Vec<LineError>,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// The lines' estimated prompt tokens (what `batch_queue_tokens` counts).
    pub tokens: u64,
    /// Lines (from the first) whose jobs are accepted.
    pub expanded: u64,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The end of the completion window.
    pub expires_at: DateTime<Utc>,
    pub in_progress_at: Option<DateTime<Utc>>,
    pub finalizing_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub cancelling_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// What a new batch is made of.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub tenant_id: String,
    pub tenant_name: String,
    pub key_id: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Batch {
    /// A batch just created: validating, with a fresh id (`batch_` and a
    /// ULID, so ids sort by time).
    pub fn new(new: NewBatch) -> Self {
        Self {
            id: format!("batch_{}", JobId::new()),
            tenant_id: new.tenant_id,
            tenant_name: new.tenant_name,
            key_id: new.key_id,
            input_file_id: new.input_file_id,
            endpoint: new.endpoint,
            completion_window: new.completion_window,
            metadata: new.metadata,
            status: BatchStatus::Validating,
            errors: Vec::new(),
            total: 0,
            completed: 0,
            failed: 0,
            tokens: 0,
            expanded: 0,
            output_file_id: None,
            error_file_id: None,
            created_at: new.created_at,
            expires_at: new.expires_at,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
        }
    }
}

/// Where a line is: open until its job's end is seen, then that end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineState {
    Open,
    Succeeded,
    Failed,
    Expired,
    Canceled,
}

impl LineState {
    pub const ALL: [Self; 5] = [
        Self::Open,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown batch line state {s:?}")))
    }
}

/// One line of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchLine {
    /// 0-based position in the input file.
    pub line: u64,
    pub custom_id: String,
    pub job_id: JobId,
    pub state: LineState,
}

/// Which lines to read: in order, after `after` (a line number), at most
/// `limit`, all or only the open ones.
#[derive(Clone, Copy, Debug)]
pub struct LinePage {
    pub after: Option<u64>,
    pub limit: usize,
    pub open_only: bool,
}

#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Stores a new batch.
    async fn create(&self, batch: &Batch) -> Result<(), StoreError>;

    /// The tenant's batch `id`.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Batch>, StoreError>;

    /// The tenant's batches, newest first, after `after` (a batch id), at
    /// most `limit`.
    async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError>;

    /// Asks the tenant's batch `id` to stop: validating or in progress →
    /// cancelling. The batch as it is after (unchanged if it was past
    /// that), or `None` if the tenant has no such batch.
    async fn cancel(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Batch>, StoreError>;

    /// Takes (or renews) the lease on at most `limit` batches that still
    /// move and are free, or already `owner`'s, oldest first.
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError>;

    /// Gives up `owner`'s leases (at shutdown), so another process takes
    /// its batches over at once.
    async fn release(&self, owner: &str) -> Result<(), StoreError>;

    /// The estimated prompt tokens of the tenant's batches in progress,
    /// but for `except`.
    async fn queued_tokens(&self, tenant: &str, except: &str) -> Result<u64, StoreError>;

    /// Holder: validating → failed, with why.
    async fn fail(
        &self,
        id: &str,
        owner: &str,
        errors: &[LineError],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Holder: validating → in progress, with every line (all open) and
    /// their estimated prompt tokens.
    async fn begin(
        &self,
        id: &str,
        owner: &str,
        lines: &[BatchLine],
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Holder: the lines up to `upto` (exclusive) have their jobs
    /// accepted; the lines in `replaced` are run by a new job (a
    /// resumed expansion's, see the API's batch driver).
    async fn expanded(
        &self,
        id: &str,
        owner: &str,
        upto: u64,
        replaced: &[(u64, JobId)],
    ) -> Result<bool, StoreError>;

    /// A page of a batch's lines, in order.
    async fn lines(&self, id: &str, page: LinePage) -> Result<Vec<BatchLine>, StoreError>;

    /// Holder: open lines that ended; counts the succeeded as completed
    /// and the failed as failed.
    async fn settle(
        &self,
        id: &str,
        owner: &str,
        ends: &[(u64, LineState)],
    ) -> Result<bool, StoreError>;

    /// Holder: in progress → finalizing; with `expired`, the batch ends
    /// `expired` (its window ran out) rather than `completed`.
    async fn finalize(
        &self,
        id: &str,
        owner: &str,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Holder: finalizing → completed or expired, cancelling → cancelled,
    /// with its output and error files.
    async fn finish(
        &self,
        id: &str,
        owner: &str,
        output_file_id: Option<&str>,
        error_file_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
