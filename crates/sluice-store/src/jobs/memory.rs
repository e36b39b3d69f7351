//! Job records in process memory, for unit tests and `sluice dev`. Same
//! forward-only rules as the Redis store; records past their retention are
//! dropped as new ones arrive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::job::{CancelOutcome, Outcome, StartOutcome};
use sluice_core::stream::StreamEntry;
use sluice_core::{JobId, JobRecord, JobStatus, Tier};

use super::waiters::{WaiterHub, Watch};
use super::{ChunkPosition, JobStore};
use crate::StoreError;

pub struct MemoryJobStore {
    jobs: Mutex<HashMap<JobId, JobRecord>>,
    /// Idempotency claims by (tenant, key); kept for the process's life.
    claims: Mutex<HashMap<(String, String), String>>,
    retention: Duration,
    hub: Arc<WaiterHub>,
    /// Each job's chunk log, kept as long as its record.
    chunks: Mutex<HashMap<JobId, Vec<StreamEntry>>>,
}

impl MemoryJobStore {
    pub fn new(retention: Duration) -> Self {
        Self {
            jobs: Mutex::default(),
            claims: Mutex::default(),
            retention,
            hub: WaiterHub::new(),
            chunks: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobRecord>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_one(&self, id: JobId, now: DateTime<Utc>) -> StartOutcome {
        let outcome = {
            let mut map = self.lock();
            let Some(job) = map.get_mut(&id) else {
                return StartOutcome::Missing;
            };
            match job.status {
                JobStatus::Queued if job.deadline_at.is_some_and(|d| now >= d) => {
                    job.end(&Outcome::Expired, now);
                    StartOutcome::Expired
                }
                JobStatus::Queued | JobStatus::Running => {
                    if job.status == JobStatus::Queued {
                        job.started_at = Some(now);
                    }
                    job.status = JobStatus::Running;
                    job.attempts += 1;
                    return StartOutcome::Started {
                        attempt: job.attempts,
                        sent_before: job.sent.clone(),
                    };
                }
                done => return StartOutcome::AlreadyDone(done),
            }
        };
        self.hub.notify(id);
        outcome
    }

    fn finish_one(&self, id: JobId, outcome: &Outcome, now: DateTime<Utc>) -> bool {
        {
            let mut map = self.lock();
            let Some(job) = map.get_mut(&id) else {
                return false;
            };
            if !job.status.can_move_to(outcome.status()) {
                return false;
            }
            job.end(outcome, now);
        }
        self.hub.notify(id);
        true
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, jobs: &[JobRecord]) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut map = self.lock();
        map.retain(|_, r| {
            let kept = chrono::Duration::from_std(r.kept_for(self.retention))
                .unwrap_or(chrono::Duration::MAX);
            r.created_at + kept > now
        });
        for job in jobs {
            map.insert(job.id, job.clone());
        }
        // A chunk log goes with its job's record.
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| map.contains_key(id));
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.lock().get(&id).cloned())
    }

    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<Option<JobStatus>>, StoreError> {
        let jobs = self.lock();
        Ok(ids
            .iter()
            .map(|id| jobs.get(id).map(|r| r.status))
            .collect())
    }

    async fn start_many(
        &self,
        ids: &[JobId],
        now: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>, StoreError> {
        Ok(ids.iter().map(|&id| self.start_one(id, now)).collect())
    }

    async fn finish_many(
        &self,
        ends: &[(JobId, &Outcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        Ok(ends
            .iter()
            .map(|&(id, outcome)| self.finish_one(id, outcome, now))
            .collect())
    }

    async fn mark_sent(&self, ids: &[JobId]) -> Result<(), StoreError> {
        let mut map = self.lock();
        for id in ids {
            if let Some(job) = map.get_mut(id) {
                if job.status == JobStatus::Running && !job.sent.contains(&job.attempts) {
                    job.sent.push(job.attempts);
                }
            }
        }
        Ok(())
    }

    async fn mark_waiting(&self, ids: &[JobId], tier: Option<Tier>) -> Result<(), StoreError> {
        let mut map = self.lock();
        for id in ids {
            if let Some(job) = map.get_mut(id) {
                if job.status == JobStatus::Running {
                    job.tier = tier;
                }
            }
        }
        Ok(())
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        {
            let mut map = self.lock();
            let Some(job) = map.get_mut(&id) else {
                return Ok(CancelOutcome::NotFound);
            };
            let waiting = job.status == JobStatus::Running && job.tier == Some(Tier::ProviderBatch);
            if job.status != JobStatus::Queued && !waiting {
                return Ok(CancelOutcome::NotCancelable(job.status));
            }
            job.status = JobStatus::Canceled;
            job.finished_at = Some(now);
        }
        self.hub.notify(id);
        Ok(CancelOutcome::Canceled)
    }

    fn watch(&self, id: JobId) -> Watch {
        self.hub.watch(id)
    }

    async fn append_chunks(&self, logs: &[(JobId, Vec<StreamEntry>)]) -> Result<(), StoreError> {
        {
            let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
            for (id, entries) in logs {
                chunks
                    .entry(*id)
                    .or_default()
                    .extend(entries.iter().cloned());
            }
        }
        for (id, _) in logs {
            self.hub.notify(*id);
        }
        Ok(())
    }

    async fn read_chunks(
        &self,
        id: JobId,
        after: Option<&ChunkPosition>,
        limit: usize,
    ) -> Result<Vec<(ChunkPosition, StreamEntry)>, StoreError> {
        let chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let from = after
            .and_then(|p| p.0.parse::<usize>().ok())
            .map_or(0, |p| p + 1);
        Ok(chunks
            .get(&id)
            .into_iter()
            .flat_map(|log| log.iter().enumerate().skip(from).take(limit))
            .map(|(i, entry)| (ChunkPosition(i.to_string()), entry.clone()))
            .collect())
    }

    async fn claim_idempotency(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        job: JobId,
        _ttl: Duration,
    ) -> Result<super::IdempotencyClaim, StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match claims.entry((tenant.to_owned(), key.to_owned())) {
            std::collections::hash_map::Entry::Occupied(held) => super::decode_claim(held.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(super::encode_claim(job, fingerprint));
                Ok(super::IdempotencyClaim::Claimed)
            }
        }
    }

    async fn release_idempotency(
        &self,
        tenant: &str,
        key: &str,
        job: JobId,
    ) -> Result<(), StoreError> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (tenant.to_owned(), key.to_owned());
        let held_by_job = claims
            .get(&slot)
            .is_some_and(|held| held.starts_with(&format!("{job}|")));
        if held_by_job {
            claims.remove(&slot);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
