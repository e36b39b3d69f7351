//! What the stores said, kept for a short time so that a request does not
//! ask again: checked API keys, spends, whether a tenant has webhook
//! endpoints. Each is a bounded cache with a time to live (moka); when many
//! requests miss one entry at once, one of them reads it.

use std::time::Duration;

use moka::future::Cache;
use sluice_store::tenants::Principal;

/// How long a checked key is trusted before it is looked up again; a
/// revoked key stops working within this time on every replica.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a spend is trusted before it is read again: a tenant can
/// overshoot its cap by at most what its jobs cost in this window.
pub const SPEND_CACHE_TTL: Duration = Duration::from_secs(2);
/// How long whether a tenant has endpoints is trusted: an endpoint gets the
/// jobs submitted from at most this long after it was created.
pub const ENDPOINTS_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries one API process keeps in each cache at most; past it the least
/// used are dropped (and read again when they come back).
const CAPACITY: u64 = 100_000;

fn cache<K, V>(ttl: Duration) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(ttl)
        .build()
}

/// Keys checked recently, by hash. Unknown keys are not kept: each try is
/// looked up.
#[derive(Clone)]
pub struct KeyCache(pub(crate) Cache<String, Principal>);

impl Default for KeyCache {
    fn default() -> Self {
        Self(cache(KEY_CACHE_TTL))
    }
}

/// Whose spend: a tenant's, or one key's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Spender {
    Tenant(String),
    Key(String),
}

/// Spends this month, in micro-dollars.
#[derive(Clone)]
pub struct SpendCache(pub(crate) Cache<Spender, u64>);

impl Default for SpendCache {
    fn default() -> Self {
        Self(cache(SPEND_CACHE_TTL))
    }
}

/// Whether each tenant (by id) has webhook endpoints.
#[derive(Clone)]
pub struct EndpointsCache(pub(crate) Cache<String, bool>);

impl Default for EndpointsCache {
    fn default() -> Self {
        Self(cache(ENDPOINTS_CACHE_TTL))
    }
}

impl EndpointsCache {
    /// Forgets `tenant`'s answer (its endpoints changed on this replica).
    pub async fn forget(&self, tenant: &str) {
        self.0.invalidate(tenant).await;
    }
}
