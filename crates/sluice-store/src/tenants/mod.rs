//! Tenants and their API keys. A key is shown once, when it is created;
//! the store keeps only its SHA-256 hash and a short display prefix.

mod keys;
mod memory;
mod postgres;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use keys::{generate_key, hash_key, KEY_PREFIX};
pub use memory::MemoryTenantStore;
pub use postgres::{
    check_migrated, connect, connect_with, migrate, PgTenantStore, STATEMENT_TIMEOUT,
};

use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// The first characters of the key, safe to show (`sk-sluice-AbC1…`).
    pub display_prefix: String,
    pub created_at: DateTime<Utc>,
}

/// A key created just now, with its plaintext: the only time it exists.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub key: String,
    pub record: ApiKey,
}

/// Who a request is from, once its key checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub tenant_name: String,
    pub key_id: String,
    /// The tenant's own limits (`None`: the config's default).
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// The tenant's monthly spend cap in µ$, if it has one.
    pub monthly_budget_micros: Option<u64>,
    /// The key's own monthly cap in µ$, if it has one.
    pub key_monthly_budget_micros: Option<u64>,
    /// The priority class of the key's jobs that name none.
    pub default_priority: Option<sluice_core::Priority>,
    /// The tenant's fair-share weight against other tenants (`None`: 1).
    pub weight: Option<u32>,
    /// The most jobs of the key in flight at once, fleet-wide (`None`: no
    /// cap of its own).
    pub key_max_inflight: Option<u32>,
}

impl Principal {
    /// A caller with no limits, caps, weight or priority of its own: every
    /// one is the config's default.
    pub fn with_defaults(tenant_id: String, tenant_name: String, key_id: String) -> Self {
        Self {
            tenant_id,
            tenant_name,
            key_id,
            requests_per_minute: None,
            tokens_per_minute: None,
            monthly_budget_micros: None,
            key_monthly_budget_micros: None,
            default_priority: None,
            weight: None,
            key_max_inflight: None,
        }
    }

    /// What this caller's jobs claim of provider capacity: the tenant's
    /// weight and the key's in-flight cap, carried on each job's message.
    pub fn share(&self) -> sluice_core::fair::Share {
        sluice_core::fair::Share {
            weight: self.weight,
            key_max_inflight: self.key_max_inflight,
        }
    }
}

#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Creates a tenant; `StoreError::Conflict` if the name is taken.
    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError>;

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    /// Creates a key for the tenant named `tenant`; `StoreError::NotFound`
    /// if there is no such tenant.
    async fn create_key(&self, tenant: &str, key_name: &str) -> Result<NewKey, StoreError>;

    /// The principal a presented key stands for, or `None` for an unknown,
    /// revoked or expired key. Records the key's last use.
    async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, StoreError>;

    /// Revokes a key by its id: it stops authenticating at once (API
    /// replicas trust a checked key for a few seconds at most).
    /// `StoreError::NotFound` if there is no such key.
    async fn revoke_key(&self, key_id: &str) -> Result<(), StoreError>;

    /// Sets (or, with `None`, removes) a key's own monthly spend cap.
    async fn set_key_budget(
        &self,
        key_id: &str,
        monthly_micros: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Sets (or, with `None`, removes) the priority class of the key's
    /// jobs that name none.
    async fn set_key_priority(
        &self,
        key_id: &str,
        priority: Option<sluice_core::Priority>,
    ) -> Result<(), StoreError>;

    /// Sets (or, with `None`, removes) the most jobs of the key in flight
    /// at once; `StoreError::NotFound` if there is no such key.
    async fn set_key_max_inflight(
        &self,
        key_id: &str,
        max_inflight: Option<u32>,
    ) -> Result<(), StoreError>;

    /// Sets (or clears) when a key stops working.
    async fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// The tenant's keys, newest first, with whether each is revoked.
    async fn list_keys(&self, tenant: &str) -> Result<Vec<(ApiKey, bool)>, StoreError>;

    /// Sets (or, with `None`, clears) the tenant's rate limits;
    /// `StoreError::NotFound` if there is no such tenant.
    async fn set_limits(
        &self,
        tenant: &str,
        requests_per_minute: Option<u64>,
        tokens_per_minute: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Sets (or, with `None`, clears) the tenant's limit on the prompt
    /// tokens of its Batch API batches in progress; `StoreError::NotFound`
    /// if there is no such tenant.
    async fn set_batch_queue_tokens(
        &self,
        tenant: &str,
        tokens: Option<u64>,
    ) -> Result<(), StoreError>;

    /// The tenant's own limit on its batches' queued tokens, if it has one
    /// (by the tenant's id).
    async fn batch_queue_tokens(&self, tenant_id: &str) -> Result<Option<u64>, StoreError>;

    /// Sets (or, with `None`, removes: weight 1) the tenant's fair-share
    /// weight; `StoreError::NotFound` if there is no such tenant.
    async fn set_tenant_weight(&self, tenant: &str, weight: Option<u32>) -> Result<(), StoreError>;

    /// The tenant's fair-share weight, if it has one (by the tenant's id).
    async fn tenant_weight(&self, tenant_id: &str) -> Result<Option<u32>, StoreError>;

    /// Sets (or, with `None`, removes) the tenant's monthly spend cap.
    async fn set_budget(&self, tenant: &str, monthly_micros: Option<u64>)
        -> Result<(), StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
