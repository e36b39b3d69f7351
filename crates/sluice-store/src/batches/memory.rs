//! [`BatchStore`] in process memory, for tests and `sluice dev`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::JobId;

use super::{Batch, BatchLine, BatchStatus, BatchStore, LineError, LinePage, LineState};
use crate::StoreError;

#[derive(Default)]
pub struct MemoryBatchStore {
    batches: Mutex<BTreeMap<String, Held>>,
}

struct Held {
    batch: Batch,
    lease: Option<(String, DateTime<Utc>)>,
    lines: Vec<BatchLine>,
}

impl MemoryBatchStore {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Held>) -> T) -> Result<T, StoreError> {
        let mut batches = self
            .batches
            .lock()
            .map_err(|_| StoreError::Corrupt("the batch store's lock is poisoned".into()))?;
        Ok(f(&mut batches))
    }

    /// Runs `f` on batch `id` if `owner` holds it; whether it did.
    fn holding(
        &self,
        id: &str,
        owner: &str,
        f: impl FnOnce(&mut Held) -> bool,
    ) -> Result<bool, StoreError> {
        self.with(|batches| match batches.get_mut(id) {
            Some(held) if held.lease.as_ref().is_some_and(|(o, _)| o == owner) => f(held),
            _ => false,
        })
    }
}

#[async_trait]
impl BatchStore for MemoryBatchStore {
    async fn create(&self, batch: &Batch) -> Result<(), StoreError> {
        self.with(|batches| {
            batches.insert(
                batch.id.clone(),
                Held {
                    batch: batch.clone(),
                    lease: None,
                    lines: Vec::new(),
                },
            );
        })
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Batch>, StoreError> {
        self.with(|batches| {
            batches
                .get(id)
                .filter(|held| held.batch.tenant_id == tenant)
                .map(|held| held.batch.clone())
        })
    }

    async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        self.with(|batches| {
            batches
                .values()
                .rev()
                .filter(|held| held.batch.tenant_id == tenant)
                .filter(|held| after.is_none_or(|after| held.batch.id.as_str() < after))
                .take(limit)
                .map(|held| held.batch.clone())
                .collect()
        })
    }

    async fn cancel(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Batch>, StoreError> {
        self.with(|batches| {
            let held = batches
                .get_mut(id)
                .filter(|h| h.batch.tenant_id == tenant)?;
            let b = &mut held.batch;
            if matches!(b.status, BatchStatus::Validating | BatchStatus::InProgress) {
                b.status = BatchStatus::Cancelling;
                b.cancelling_at = Some(now);
            }
            Some(b.clone())
        })
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        self.with(|batches| {
            let mut claimed = Vec::new();
            for held in batches.values_mut() {
                if claimed.len() >= limit {
                    break;
                }
                let free = match &held.lease {
                    None => true,
                    Some((o, until)) => o == owner || *until <= now,
                };
                if held.batch.status.is_active() && free {
                    held.lease = Some((owner.to_owned(), until));
                    claimed.push(held.batch.clone());
                }
            }
            claimed
        })
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        self.with(|batches| {
            for held in batches.values_mut() {
                if held.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                    held.lease = None;
                }
            }
        })
    }

    async fn queued_tokens(&self, tenant: &str, except: &str) -> Result<u64, StoreError> {
        self.with(|batches| {
            batches
                .values()
                .filter(|h| h.batch.tenant_id == tenant && h.batch.id != except)
                .filter(|h| h.batch.status == BatchStatus::InProgress)
                .map(|h| h.batch.tokens)
                .sum()
        })
    }

    async fn fail(
        &self,
        id: &str,
        owner: &str,
        errors: &[LineError],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            let b = &mut held.batch;
            if b.status != BatchStatus::Validating {
                return false;
            }
            b.status = BatchStatus::Failed;
            b.errors = errors.to_vec();
            b.failed_at = Some(now);
            true
        })
    }

    async fn begin(
        &self,
        id: &str,
        owner: &str,
        lines: &[BatchLine],
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            if held.batch.status != BatchStatus::Validating {
                return false;
            }
            held.lines = lines.to_vec();
            let b = &mut held.batch;
            b.status = BatchStatus::InProgress;
            b.total = lines.len() as u64;
            b.tokens = tokens;
            b.in_progress_at = Some(now);
            true
        })
    }

    async fn expanded(
        &self,
        id: &str,
        owner: &str,
        upto: u64,
        replaced: &[(u64, JobId)],
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            for (line, job) in replaced {
                if let Some(l) = held.lines.iter_mut().find(|l| l.line == *line) {
                    l.job_id = *job;
                }
            }
            held.batch.expanded = held.batch.expanded.max(upto);
            true
        })
    }

    async fn lines(&self, id: &str, page: LinePage) -> Result<Vec<BatchLine>, StoreError> {
        self.with(|batches| {
            let Some(held) = batches.get(id) else {
                return Vec::new();
            };
            held.lines
                .iter()
                .filter(|l| page.after.is_none_or(|after| l.line > after))
                .filter(|l| !page.open_only || l.state == LineState::Open)
                .take(page.limit)
                .cloned()
                .collect()
        })
    }

    async fn settle(
        &self,
        id: &str,
        owner: &str,
        ends: &[(u64, LineState)],
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            for (line, state) in ends {
                let Some(l) = held.lines.iter_mut().find(|l| l.line == *line) else {
                    continue;
                };
                if l.state != LineState::Open {
                    continue;
                }
                l.state = *state;
                match state {
                    LineState::Succeeded => held.batch.completed += 1,
                    LineState::Failed => held.batch.failed += 1,
                    _ => {}
                }
            }
            true
        })
    }

    async fn finalize(
        &self,
        id: &str,
        owner: &str,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            let b = &mut held.batch;
            if b.status != BatchStatus::InProgress {
                return false;
            }
            b.status = BatchStatus::Finalizing;
            b.finalizing_at = Some(now);
            if expired {
                b.expired_at = Some(now);
            }
            true
        })
    }

    async fn finish(
        &self,
        id: &str,
        owner: &str,
        output_file_id: Option<&str>,
        error_file_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.holding(id, owner, |held| {
            let b = &mut held.batch;
            match b.status {
                BatchStatus::Finalizing if b.expired_at.is_some() => {
                    b.status = BatchStatus::Expired;
                }
                BatchStatus::Finalizing => {
                    b.status = BatchStatus::Completed;
                    b.completed_at = Some(now);
                }
                BatchStatus::Cancelling => {
                    b.status = BatchStatus::Cancelled;
                    b.cancelled_at = Some(now);
                }
                _ => return false,
            }
            b.output_file_id = output_file_id.map(str::to_owned);
            b.error_file_id = error_file_id.map(str::to_owned);
            held.lease = None;
            true
        })
    }
}
