//! From the queue into the record: a staged group of jobs (one target and
//! endpoint, flushed by a short-wait batcher so that one transaction takes
//! many) is started like any batch (canceled, expired and ended jobs are
//! settled there), appended to its target's collecting batch in
//! PostgreSQL, and only then acked. A group that cannot be appended goes
//! back to the queue.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sluice_core::{JobId, Tier};
use sluice_store::provider_batches::{BatchedJob, CollectLimits, NewLine, ProviderBatchStore};

use crate::batcher::Flushed;
use crate::execute::{Executor, Settled};
use crate::pending::Pending;
use crate::retry::with_store_retry;

use super::Planned;

/// How long a staged job waits for others to share its append.
pub const STAGE_WAIT: Duration = Duration::from_millis(250);

/// A job on its way into a provider batch.
pub struct Staged {
    pub pending: Pending,
    pub planned: Planned,
}

/// Appends `batch`'s jobs to their provider batch, then settles them.
pub(crate) async fn stage(
    executor: &Executor,
    store: &dyn ProviderBatchStore,
    batch: Flushed<Staged>,
) {
    let Some(first) = batch.items.first() else {
        return;
    };
    let target = std::sync::Arc::clone(&first.planned.target);
    let key = target.key(batch.key.endpoint);
    let mut plans: HashMap<JobId, Planned> = HashMap::with_capacity(batch.items.len());
    let pending: Vec<Pending> = batch
        .items
        .into_iter()
        .map(|s| {
            plans.insert(s.pending.message.id, s.planned);
            s.pending
        })
        .collect();
    let (runnable, mut settled) = executor.start_all(pending).await;
    let lines: Vec<NewLine> = runnable
        .iter()
        .filter_map(|r| {
            let plan = plans.get(&r.pending.message.id)?;
            Some(NewLine {
                job: BatchedJob {
                    message: r.pending.message.clone(),
                    attempt: r.attempt,
                    sent_before: r.sent_before.clone(),
                },
                bytes: plan.bytes,
                hedge_at: plan.hedge_at,
            })
        })
        .collect();
    let limits = CollectLimits {
        max_lines: target.config.max_lines,
        max_bytes: target.config.max_bytes,
        collect: Duration::from_secs(target.config.collect_s),
    };
    let appended = lines.is_empty()
        || match with_store_retry("append", || store.append(&key, &lines, limits, Utc::now())).await
        {
            Ok(batches) => {
                tracing::debug!(jobs = lines.len(), ?batches, provider = %key.provider, "jobs handed to provider batches");
                // The records show where the jobs wait, and let their
                // callers cancel them meanwhile.
                let ids: Vec<JobId> = lines.iter().map(|l| l.job.message.id).collect();
                if let Err(e) = with_store_retry("mark waiting", || {
                    executor.store.mark_waiting(&ids, Some(Tier::ProviderBatch))
                })
                .await
                {
                    tracing::warn!(jobs = ids.len(), error = %e, "cannot mark jobs waiting in a provider batch; they show running, and cannot be canceled");
                }
                true
            }
            Err(e) => {
                tracing::error!(jobs = lines.len(), error = %e, "cannot record jobs in a provider batch; returning them to the queue");
                false
            }
        };
    settled.extend(runnable.into_iter().map(|r| {
        if appended {
            Settled::ack(r.pending, Vec::new())
        } else {
            Settled::requeue(r.pending)
        }
    }));
    executor.settle_all(settled).await;
}
