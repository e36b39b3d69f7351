//! The provider-batch tier: jobs that can wait hours go out as lines of a
//! provider's Batch API batch, at the batch price.
//!
//! ```text
//! consumer ─(plan: deadline far enough, provider sells batches)─▶ stage
//!   stage: start the jobs, append them to their target's collecting batch
//!          in PostgreSQL, then ack their messages
//! poller (every worker, every poll_s): claim the batches due, by lease
//!   collecting, closed ─▶ drop the jobs canceled or answered by the
//!                         cache meanwhile; submit the rest (lines by
//!                         custom_id = job id)
//!   submitted ─▶ status ─▶ ended: read results, end each job through the
//!                           executor's one finish path (CAS, cache,
//!                           ledger, webhook), then close its row
//!              └▶ hedge time passed: cancel, send the open jobs back to
//!                 the queue for real time; keep polling for lines billed
//! ```
//!
//! - [`plan`]: which jobs go into a batch, and where.
//! - [`stage`]: from the queue into the record.
//! - [`poll`]: the poller: submit, look, hedge.
//! - [`ends`]: each line's end: answered, failed, or back to the queue.
//!
//! Invariants:
//! - A job's message is acked only after its batch row is committed; from
//!   then on the record is the job's home, until its line's end is settled
//!   (stored, on the ledger, announced) and its row closed.
//! - A batch is worked on by the worker that holds its lease; a killed
//!   worker's batches are taken over once their lease runs out.
//! - A job re-routed to real time carries `rerouted`, so it never goes
//!   into a batch again; its line, if the provider answers it anyway, is
//!   still recorded as the provider bills it (a superseded call when the
//!   real-time call ended the job first).

pub mod ends;
pub mod plan;
pub mod poll;
pub mod stage;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_core::JobId;
use sluice_providers::SetupError;
use sluice_queue::{Delivery, QueueError, Settle, Settlement};
use sluice_store::provider_batches::ProviderBatchStore;

pub use plan::{Planned, Targets};

/// The provider-batch tier of one worker.
pub struct ProviderBatches {
    pub store: Arc<dyn ProviderBatchStore>,
    pub targets: Targets,
    /// This worker's name on the leases it holds (unique per process).
    pub owner: String,
}

impl ProviderBatches {
    /// The tier `config` asks for, its batches kept in `store`; `None`
    /// when no model's route starts with a provider that sells batches.
    pub fn from_config(
        config: &Config,
        metrics: &Arc<Metrics>,
        store: Arc<dyn ProviderBatchStore>,
    ) -> Result<Option<Arc<Self>>, SetupError> {
        let targets = Targets::from_config(config, metrics)?;
        if targets.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            store,
            targets,
            owner: Self::owner_name(),
        })))
    }

    /// A name for this process's leases: host, pid and a fresh ULID.
    pub fn owner_name() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}/{}/{}", std::process::id(), ulid::Ulid::new())
    }
}

/// The jobs of a batch whose ends the executor settled (acked): their
/// rows can be closed. A job it gave back ("requeue": its end could not be
/// stored, written or announced) stays open for the next poll.
#[derive(Clone, Default)]
pub(crate) struct SettledJobs(Arc<Mutex<Vec<JobId>>>);

impl SettledJobs {
    /// A delivery for `id` that reports here when it is acked.
    pub(crate) fn delivery(&self, id: JobId) -> Delivery {
        Delivery::detached(
            bytes::Bytes::new(),
            Box::new(Line {
                id,
                settled: self.clone(),
            }),
        )
    }

    pub(crate) fn take(&self) -> Vec<JobId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Line {
    id: JobId,
    settled: SettledJobs,
}

#[async_trait]
impl Settle for Line {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        if how == Settlement::Ack {
            self.settled
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.id);
        }
        Ok(())
    }
}
