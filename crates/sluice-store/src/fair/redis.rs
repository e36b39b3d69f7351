//! [`FairStore`] in Redis: a class's counters in one hash
//! (`P:fair:{CLASS}`), a key's slots in one sorted set
//! (`P:inflight:{KEY}`), each changed by one script, so each call is one
//! round trip and stays on one slot of a cluster.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use sluice_core::{JobId, Priority};

use super::{Charge, FairStore};
use crate::StoreError;

pub struct RedisFairStore {
    pool: Pool,
    prefix: String,
    charge: Script,
    slot: Script,
}

impl RedisFairStore {
    pub(crate) fn new(pool: Pool, prefix: String) -> Self {
        Self {
            pool,
            prefix,
            charge: Script::from_lua(include_str!("../jobs/lua/fair_charge.lua")),
            slot: Script::from_lua(include_str!("../jobs/lua/fair_slot.lua")),
        }
    }

    fn slots_key(&self, key: &str) -> String {
        format!("{}:inflight:{{{key}}}", self.prefix)
    }
}

#[async_trait]
impl FairStore for RedisFairStore {
    async fn charge(
        &self,
        class: Priority,
        charges: &[Charge],
        read: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let key = format!("{}:fair:{{{}}}", self.prefix, class.as_str());
        let mut args = Vec::with_capacity(1 + charges.len() * 3 + read.len());
        args.push(charges.len().to_string());
        for c in charges {
            args.push(c.tenant.clone());
            args.push(c.units.to_string());
            args.push(c.floor.to_string());
        }
        args.extend(read.iter().cloned());
        let values: Vec<u64> = self
            .charge
            .evalsha_with_reload(self.pool.next(), vec![key], args)
            .await?;
        Ok(values)
    }

    async fn take_slot(
        &self,
        key: &str,
        cap: u32,
        job: JobId,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let args = vec![job.to_string(), cap.to_string(), lease_ms.to_string()];
        let taken: u8 = self
            .slot
            .evalsha_with_reload(self.pool.next(), vec![self.slots_key(key)], args)
            .await?;
        Ok(taken == 1)
    }

    async fn free_slots(&self, key: &str, jobs: &[JobId]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let members: Vec<String> = jobs.iter().map(ToString::to_string).collect();
        let _: i64 = self.pool.zrem(self.slots_key(key), members).await?;
        Ok(())
    }
}
