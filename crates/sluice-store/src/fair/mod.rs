//! Fair share's fleet-wide state: each priority class's virtual counters
//! per tenant (see `sluice_core::fair`), and each capped API key's jobs in
//! flight. Workers charge and read the counters in the background (a
//! worker's gate never waits on them) and take a key's slot before a job of
//! a capped key goes on.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use sluice_core::{JobId, Priority};

pub use memory::MemoryFairStore;
pub use redis::RedisFairStore;

use crate::StoreError;

/// Service given to a tenant: `units` added to its counter once it is at
/// least `floor` (the least counter among those waiting when it started
/// waiting again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub tenant: String,
    pub units: u64,
    pub floor: u64,
}

#[async_trait]
pub trait FairStore: Send + Sync + 'static {
    /// Applies `charges` to `class`'s counters, then answers the counters
    /// of `read`, in order (0 for a tenant never charged).
    async fn charge(
        &self,
        class: Priority,
        charges: &[Charge],
        read: &[String],
    ) -> Result<Vec<u64>, StoreError>;

    /// Takes one of `key`'s `cap` in-flight slots for `job`: true if taken
    /// (or already the job's), false if the key is full. A slot not freed
    /// within `lease` (its worker died) frees itself.
    async fn take_slot(
        &self,
        key: &str,
        cap: u32,
        job: JobId,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Frees `jobs`' slots of `key` (those it does not hold are ignored).
    async fn free_slots(&self, key: &str, jobs: &[JobId]) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{RedisJobStore, RedisOptions};

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        contract::all(&MemoryFairStore::default(), "t").await;
    }

    #[tokio::test]
    async fn redis_store_keeps_the_contract() {
        let prefix = format!("test-{}", JobId::new().to_string().to_lowercase());
        let store = RedisJobStore::connect(RedisOptions {
            url: std::env::var("SLUICE_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix,
            retention: Duration::from_secs(60),
            pool_size: 2,
        })
        .await
        .expect("redis at SLUICE_REDIS_URL or 127.0.0.1:6379");
        contract::all(&store.fair(), "t").await;
        store.delete_all().await.unwrap();
        store.close().await;
    }
}

#[cfg(test)]
mod contract {
    //! The behaviour every [`FairStore`] shows, written once.
    use super::*;

    /// Every scenario, with tenant and key names under `ns` (so runs on a
    /// shared server do not meet).
    pub async fn all(store: &dyn FairStore, ns: &str) {
        counters_lift_then_add_and_read_back(store, ns).await;
        a_key_holds_at_most_its_cap_until_a_slot_is_freed(store, ns).await;
        a_slot_its_worker_never_freed_expires_with_its_lease(store, ns).await;
    }

    async fn counters_lift_then_add_and_read_back(store: &dyn FairStore, ns: &str) {
        let (a, b, c) = (format!("{ns}-a"), format!("{ns}-b"), format!("{ns}-never"));
        let charge = |tenant: &str, units, floor| Charge {
            tenant: tenant.to_owned(),
            units,
            floor,
        };
        let read = [a.clone(), b.clone(), c.clone()];
        let got = store
            .charge(Priority::Standard, &[charge(&a, 100, 0)], &read)
            .await
            .unwrap();
        assert_eq!(got, vec![100, 0, 0]);
        // b comes back from idle: lifted to 100, then charged 5.
        let got = store
            .charge(
                Priority::Standard,
                &[charge(&b, 5, 100), charge(&a, 1, 50)],
                &read,
            )
            .await
            .unwrap();
        assert_eq!(got, vec![101, 105, 0]);
        // Classes keep counters of their own.
        let got = store
            .charge(Priority::Batch, &[], &read[..1])
            .await
            .unwrap();
        assert_eq!(got, vec![0]);
    }

    async fn a_key_holds_at_most_its_cap_until_a_slot_is_freed(store: &dyn FairStore, ns: &str) {
        let key = format!("{ns}-key");
        let lease = Duration::from_secs(60);
        let jobs: Vec<JobId> = (0..3).map(|_| JobId::new()).collect();
        assert!(store.take_slot(&key, 2, jobs[0], lease).await.unwrap());
        assert!(store.take_slot(&key, 2, jobs[1], lease).await.unwrap());
        assert!(!store.take_slot(&key, 2, jobs[2], lease).await.unwrap());
        // Asking again for a slot held is not a second slot.
        assert!(store.take_slot(&key, 2, jobs[1], lease).await.unwrap());
        store.free_slots(&key, &jobs[..1]).await.unwrap();
        assert!(store.take_slot(&key, 2, jobs[2], lease).await.unwrap());
        store.free_slots(&key, &jobs).await.unwrap();
    }

    async fn a_slot_its_worker_never_freed_expires_with_its_lease(store: &dyn FairStore, ns: &str) {
        let key = format!("{ns}-lease");
        let (dead, next) = (JobId::new(), JobId::new());
        assert!(store
            .take_slot(&key, 1, dead, Duration::from_millis(50))
            .await
            .unwrap());
        assert!(!store
            .take_slot(&key, 1, next, Duration::from_secs(60))
            .await
            .unwrap());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(store
            .take_slot(&key, 1, next, Duration::from_secs(60))
            .await
            .unwrap());
        store.free_slots(&key, &[next]).await.unwrap();
    }
}
