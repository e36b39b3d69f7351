//! [`FairStore`] in memory, for unit tests and `sluice dev`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice_core::{JobId, Priority};

use super::{Charge, FairStore};
use crate::StoreError;

#[derive(Default)]
pub struct MemoryFairStore {
    counters: Mutex<HashMap<(Priority, String), u64>>,
    /// Per key: each job holding a slot, until when.
    slots: Mutex<HashMap<String, HashMap<JobId, Instant>>>,
}

#[async_trait]
impl FairStore for MemoryFairStore {
    async fn charge(
        &self,
        class: Priority,
        charges: &[Charge],
        read: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for c in charges {
            let value = counters.entry((class, c.tenant.clone())).or_insert(0);
            *value = (*value).max(c.floor).saturating_add(c.units);
        }
        Ok(read
            .iter()
            .map(|t| counters.get(&(class, t.clone())).copied().unwrap_or(0))
            .collect())
    }

    async fn take_slot(
        &self,
        key: &str,
        cap: u32,
        job: JobId,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let held = slots.entry(key.to_owned()).or_default();
        held.retain(|_, until| *until > now);
        if held.contains_key(&job) || held.len() < cap as usize {
            held.insert(job, now + lease);
            return Ok(true);
        }
        Ok(false)
    }

    async fn free_slots(&self, key: &str, jobs: &[JobId]) -> Result<(), StoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = slots.get_mut(key) {
            for job in jobs {
                held.remove(job);
            }
        }
        Ok(())
    }
}
