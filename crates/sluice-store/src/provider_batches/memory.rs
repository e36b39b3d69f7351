//! [`ProviderBatchStore`] in maps, for unit tests and `sluice dev`, with
//! the PostgreSQL one's semantics: the same fill plan, the same leases,
//! the same ownership checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::JobId;

use super::fill::{self, Totals};
use super::{
    BatchState, BatchSummary, BatchTarget, BatchedJob, CollectLimits, HeldBatch, NewLine, OpenJob,
    ProviderBatchStore, StateCount,
};
use crate::StoreError;

#[derive(Debug, Default)]
pub struct MemoryProviderBatchStore {
    /// By id.
    batches: Mutex<BTreeMap<String, Batch>>,
}

impl MemoryProviderBatchStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Batch>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A batch's row and its job rows.
#[derive(Debug)]
struct Batch {
    target: BatchTarget,
    state: BatchState,
    remote_id: Option<String>,
    created_at: DateTime<Utc>,
    close_at: DateTime<Utc>,
    hedge_at: DateTime<Utc>,
    submitted_at: Option<DateTime<Utc>>,
    hedged: bool,
    lines: u64,
    bytes: u64,
    owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    /// In the order appended; emptied when the batch is done.
    jobs: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    job: BatchedJob,
    open: bool,
    rerouted: bool,
}

impl Batch {
    fn new(target: &BatchTarget, totals: &Totals) -> Self {
        Self {
            target: target.clone(),
            state: BatchState::Collecting,
            remote_id: None,
            created_at: totals.created_at,
            close_at: totals.close_at,
            hedge_at: totals.hedge_at,
            submitted_at: None,
            hedged: false,
            lines: 0,
            bytes: 0,
            owner: None,
            lease_until: None,
            jobs: Vec::new(),
        }
    }

    fn held_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    fn claimable(&self, owner: &str, now: DateTime<Utc>) -> bool {
        self.state != BatchState::Done
            && (self.held_by(owner) || self.lease_until.is_none_or(|until| until <= now))
            && (self.state != BatchState::Collecting || self.close_at <= now)
    }

    fn held(&self, id: &str) -> HeldBatch {
        HeldBatch {
            id: id.to_owned(),
            target: self.target.clone(),
            state: self.state,
            remote_id: self.remote_id.clone(),
            created_at: self.created_at,
            close_at: self.close_at,
            hedge_at: self.hedge_at,
            submitted_at: self.submitted_at,
            hedged: self.hedged,
            lines: self.lines,
            jobs: (self.jobs.iter().filter(|row| row.open))
                .map(|row| OpenJob {
                    job: row.job.clone(),
                    rerouted: row.rerouted,
                })
                .collect(),
        }
    }
}

/// The batch `id` if `owner` holds it.
fn held_mut<'a>(
    batches: &'a mut BTreeMap<String, Batch>,
    id: &str,
    owner: &str,
) -> Option<&'a mut Batch> {
    batches.get_mut(id).filter(|b| b.held_by(owner))
}

#[async_trait]
impl ProviderBatchStore for MemoryProviderBatchStore {
    async fn append(
        &self,
        target: &BatchTarget,
        lines: &[NewLine],
        limits: CollectLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut batches = self.lock();
        let mut open: Vec<Totals> = (batches.iter())
            .filter(|(_, b)| {
                b.state == BatchState::Collecting
                    && b.target == *target
                    && b.lines < u64::try_from(limits.max_lines).unwrap_or(u64::MAX)
                    && b.bytes < limits.max_bytes
            })
            .map(|(id, b)| Totals {
                id: id.clone(),
                created_at: b.created_at,
                close_at: b.close_at,
                hedge_at: b.hedge_at,
                lines: b.lines,
                bytes: b.bytes,
            })
            .collect();
        open.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let wanted: HashSet<JobId> = lines.iter().map(|l| l.job.message.id).collect();
        let home: HashMap<JobId, String> = (batches.iter())
            .flat_map(|(id, b)| b.jobs.iter().map(move |row| (id, row)))
            .filter(|(_, row)| !row.rerouted && wanted.contains(&row.job.message.id))
            .map(|(id, row)| (row.job.message.id, id.clone()))
            .collect();

        let plan = fill::plan(open, &home, lines, limits, now);
        for totals in &plan.batches {
            let batch =
                (batches.entry(totals.id.clone())).or_insert_with(|| Batch::new(target, totals));
            batch.lines = totals.lines;
            batch.bytes = totals.bytes;
            batch.close_at = totals.close_at;
            batch.hedge_at = totals.hedge_at;
        }
        for placed in &plan.placed {
            let Some(batch) = batches.get_mut(&plan.batches[placed.batch].id) else {
                continue;
            };
            // A job re-routed from this very batch comes back as a new line
            // (PostgreSQL: the one row per batch and job, overwritten).
            let job = placed.line.job.message.id;
            batch.jobs.retain(|row| row.job.message.id != job);
            batch.jobs.push(Row {
                job: placed.line.job.clone(),
                open: true,
                rerouted: false,
            });
        }
        Ok(plan.ids)
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<HeldBatch>, StoreError> {
        let mut batches = self.lock();
        let mut ids: Vec<(DateTime<Utc>, String)> = (batches.iter())
            .filter(|(_, b)| b.claimable(owner, now))
            .map(|(id, b)| (b.created_at, id.clone()))
            .collect();
        ids.sort();
        ids.truncate(limit);
        let until = fill::after(now, lease);
        let mut held = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            if let Some(batch) = batches.get_mut(&id) {
                batch.owner = Some(owner.to_owned());
                batch.lease_until = Some(until);
                held.push(batch.held(&id));
            }
        }
        Ok(held)
    }

    async fn begin_submit(&self, id: &str, owner: &str) -> Result<Option<HeldBatch>, StoreError> {
        let mut batches = self.lock();
        Ok(held_mut(&mut batches, id, owner)
            .filter(|b| b.state == BatchState::Collecting)
            .map(|b| {
                b.state = BatchState::Submitting;
                b.held(id)
            }))
    }

    async fn submitted(
        &self,
        id: &str,
        owner: &str,
        remote_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut batches = self.lock();
        let Some(b) = held_mut(&mut batches, id, owner) else {
            return Ok(false);
        };
        if b.state != BatchState::Submitting {
            return Ok(false);
        }
        b.state = BatchState::Submitted;
        b.remote_id = Some(remote_id.to_owned());
        b.submitted_at = Some(now);
        Ok(true)
    }

    async fn rerouted(
        &self,
        id: &str,
        owner: &str,
        jobs: &[JobId],
        hedge: bool,
    ) -> Result<bool, StoreError> {
        let mut batches = self.lock();
        let Some(b) = held_mut(&mut batches, id, owner) else {
            return Ok(false);
        };
        for row in b.jobs.iter_mut() {
            if jobs.contains(&row.job.message.id) {
                row.rerouted = true;
            }
        }
        b.hedged |= hedge;
        Ok(true)
    }

    async fn settled(&self, id: &str, jobs: &[JobId]) -> Result<(), StoreError> {
        if let Some(b) = self.lock().get_mut(id) {
            for row in b.jobs.iter_mut() {
                if jobs.contains(&row.job.message.id) {
                    row.open = false;
                }
            }
        }
        Ok(())
    }

    async fn finish(&self, id: &str, owner: &str, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut batches = self.lock();
        let Some(b) = held_mut(&mut batches, id, owner) else {
            return Ok(false);
        };
        // (When it ended is on the PostgreSQL record only: nothing reads it.)
        b.state = BatchState::Done;
        b.owner = None;
        b.lease_until = None;
        b.jobs.clear();
        Ok(true)
    }

    async fn renew(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let until = fill::after(now, lease);
        let mut renewed = 0;
        for b in self.lock().values_mut() {
            if b.held_by(owner) && b.state != BatchState::Done {
                b.lease_until = Some(until);
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        for b in self.lock().values_mut() {
            if b.held_by(owner) && b.state != BatchState::Done {
                b.owner = None;
                b.lease_until = None;
            }
        }
        Ok(())
    }

    async fn list(&self, all: bool, limit: usize) -> Result<Vec<BatchSummary>, StoreError> {
        let batches = self.lock();
        let mut listed: Vec<BatchSummary> = (batches.iter())
            .filter(|(_, b)| all || b.state != BatchState::Done)
            .map(|(id, b)| BatchSummary {
                batch: HeldBatch {
                    jobs: Vec::new(),
                    ..b.held(id)
                },
                open_jobs: b.jobs.iter().filter(|row| row.open).count() as u64,
                owner: b.owner.clone(),
            })
            .collect();
        listed.sort_by(|a, b| {
            (b.batch.created_at, &b.batch.id).cmp(&(a.batch.created_at, &a.batch.id))
        });
        listed.truncate(limit);
        Ok(listed)
    }

    async fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        let mut counts: HashMap<(String, BatchState), u64> = HashMap::new();
        for b in self.lock().values() {
            if b.state != BatchState::Done {
                *counts
                    .entry((b.target.provider.clone(), b.state))
                    .or_default() += 1;
            }
        }
        let mut counts: Vec<StateCount> = (counts.into_iter())
            .map(|((provider, state), batches)| StateCount {
                provider,
                state,
                batches,
            })
            .collect();
        counts.sort_by(|a, b| (&a.provider, a.state as u8).cmp(&(&b.provider, b.state as u8)));
        Ok(counts)
    }
}
