//! Tenants and keys in a map, for tests and single-process setups.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::keys::{display_prefix, generate_key, hash_key, looks_like_key};
use super::{ApiKey, NewKey, Principal, Tenant, TenantStore};
use crate::StoreError;

/// An in-memory [`TenantStore`] with the same semantics as the PostgreSQL
/// one: unique tenant names, keys kept only as hashes, revoked and expired
/// keys refused.
#[derive(Debug, Default)]
pub struct MemoryTenantStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By name.
    tenants: HashMap<String, Tenant>,
    /// Rate limits by tenant id.
    limits: HashMap<String, (Option<u64>, Option<u64>)>,
    batch_queue_tokens: HashMap<String, u64>,
    /// Fair-share weights by tenant id.
    weights: HashMap<String, u32>,
    /// Monthly spend caps by tenant id, and by key id.
    budgets: HashMap<String, u64>,
    key_budgets: HashMap<String, u64>,
    /// Default priority classes by key id.
    key_priorities: HashMap<String, sluice_core::Priority>,
    /// In-flight caps by key id.
    key_max_inflight: HashMap<String, u32>,
    /// By key hash.
    keys: HashMap<String, KeyRow>,
}

impl Inner {
    /// The id of the tenant named `name`.
    fn tenant_id(&self, name: &str) -> Result<String, StoreError> {
        self.tenants
            .values()
            .find(|t| t.name == name)
            .map(|t| t.id.clone())
            .ok_or_else(|| StoreError::NotFound(format!("no tenant named {name:?}")))
    }
}

#[derive(Debug)]
struct KeyRow {
    record: ApiKey,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl MemoryTenantStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-updated (every
        // change is a single insert), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key_row_mut<'a>(inner: &'a mut Inner, key_id: &str) -> Result<&'a mut KeyRow, StoreError> {
        inner
            .keys
            .values_mut()
            .find(|row| row.record.id == key_id)
            .ok_or_else(|| StoreError::NotFound(format!("no such key: {key_id}")))
    }

    /// Revokes a key by id; it no longer authenticates.
    pub fn revoke_key(&self, key_id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let row = Self::key_row_mut(&mut inner, key_id)?;
        row.revoked_at.get_or_insert_with(Utc::now);
        Ok(())
    }

    /// Sets (or clears) when a key expires.
    pub fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::key_row_mut(&mut inner, key_id)?.expires_at = expires_at;
        Ok(())
    }

    /// When a key last authenticated, if ever.
    pub fn key_last_used_at(&self, key_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut inner = self.lock();
        Ok(Self::key_row_mut(&mut inner, key_id)?.last_used_at)
    }
}

#[async_trait]
impl TenantStore for MemoryTenantStore {
    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let mut inner = self.lock();
        if inner.tenants.contains_key(name) {
            return Err(StoreError::Conflict(format!(
                "tenant {name:?} already exists"
            )));
        }
        let tenant = Tenant {
            id: Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: Utc::now(),
        };
        inner.tenants.insert(name.to_owned(), tenant.clone());
        Ok(tenant)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(self.lock().tenants.get(name).cloned())
    }

    async fn create_key(&self, tenant: &str, key_name: &str) -> Result<NewKey, StoreError> {
        let mut inner = self.lock();
        let tenant_id = inner
            .tenants
            .get(tenant)
            .map(|t| t.id.clone())
            .ok_or_else(|| StoreError::NotFound(format!("no such tenant: {tenant:?}")))?;
        let key = generate_key();
        let hash = hash_key(&key);
        if inner.keys.contains_key(&hash) {
            return Err(StoreError::Conflict("key hash collision".to_owned()));
        }
        let record = ApiKey {
            id: Uuid::now_v7().to_string(),
            tenant_id,
            name: key_name.to_owned(),
            display_prefix: display_prefix(&key),
            created_at: Utc::now(),
        };
        inner.keys.insert(
            hash,
            KeyRow {
                record: record.clone(),
                last_used_at: None,
                expires_at: None,
                revoked_at: None,
            },
        );
        Ok(NewKey { key, record })
    }

    async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, StoreError> {
        if !looks_like_key(presented) {
            return Ok(None);
        }
        let hash = hash_key(presented);
        let now = Utc::now();
        let mut inner = self.lock();
        let Inner {
            tenants,
            keys,
            limits,
            budgets,
            key_budgets,
            key_priorities,
            weights,
            key_max_inflight,
            ..
        } = &mut *inner;
        let Some(row) = keys.get_mut(&hash) else {
            return Ok(None);
        };
        if row.revoked_at.is_some() || row.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let Some(tenant) = tenants.values().find(|t| t.id == row.record.tenant_id) else {
            return Ok(None);
        };
        row.last_used_at = Some(now);
        let (requests_per_minute, tokens_per_minute) =
            limits.get(&tenant.id).copied().unwrap_or_default();
        Ok(Some(Principal {
            tenant_id: tenant.id.clone(),
            tenant_name: tenant.name.clone(),
            key_id: row.record.id.clone(),
            requests_per_minute,
            tokens_per_minute,
            monthly_budget_micros: budgets.get(&tenant.id).copied(),
            key_monthly_budget_micros: key_budgets.get(&row.record.id).copied(),
            default_priority: key_priorities.get(&row.record.id).copied(),
            weight: weights.get(&tenant.id).copied(),
            key_max_inflight: key_max_inflight.get(&row.record.id).copied(),
        }))
    }

    async fn set_budget(
        &self,
        tenant: &str,
        monthly_micros: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let id = inner.tenant_id(tenant)?;
        match monthly_micros {
            Some(cap) => inner.budgets.insert(id, cap),
            None => inner.budgets.remove(&id),
        };
        Ok(())
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), StoreError> {
        MemoryTenantStore::revoke_key(self, key_id)
    }

    async fn set_key_budget(
        &self,
        key_id: &str,
        monthly_micros: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::key_row_mut(&mut inner, key_id)?;
        match monthly_micros {
            Some(cap) => inner.key_budgets.insert(key_id.to_owned(), cap),
            None => inner.key_budgets.remove(key_id),
        };
        Ok(())
    }

    async fn set_key_priority(
        &self,
        key_id: &str,
        priority: Option<sluice_core::Priority>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::key_row_mut(&mut inner, key_id)?;
        match priority {
            Some(p) => inner.key_priorities.insert(key_id.to_owned(), p),
            None => inner.key_priorities.remove(key_id),
        };
        Ok(())
    }

    async fn set_key_max_inflight(
        &self,
        key_id: &str,
        max_inflight: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        Self::key_row_mut(&mut inner, key_id)?;
        match max_inflight {
            Some(cap) => inner.key_max_inflight.insert(key_id.to_owned(), cap),
            None => inner.key_max_inflight.remove(key_id),
        };
        Ok(())
    }

    async fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        MemoryTenantStore::set_key_expiry(self, key_id, expires_at)
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<(ApiKey, bool)>, StoreError> {
        let inner = self.lock();
        let id = inner.tenant_id(tenant)?;
        let mut keys: Vec<(ApiKey, bool)> = inner
            .keys
            .values()
            .filter(|k| k.record.tenant_id == id)
            .map(|k| (k.record.clone(), k.revoked_at.is_some()))
            .collect();
        keys.sort_by(|a, b| b.0.id.cmp(&a.0.id));
        Ok(keys)
    }

    async fn set_limits(
        &self,
        tenant: &str,
        requests_per_minute: Option<u64>,
        tokens_per_minute: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let id = inner.tenant_id(tenant)?;
        inner
            .limits
            .insert(id, (requests_per_minute, tokens_per_minute));
        Ok(())
    }

    async fn set_batch_queue_tokens(
        &self,
        tenant: &str,
        tokens: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let id = inner.tenant_id(tenant)?;
        match tokens {
            Some(tokens) => inner.batch_queue_tokens.insert(id, tokens),
            None => inner.batch_queue_tokens.remove(&id),
        };
        Ok(())
    }

    async fn batch_queue_tokens(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().batch_queue_tokens.get(tenant_id).copied())
    }

    async fn set_tenant_weight(&self, tenant: &str, weight: Option<u32>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let id = inner.tenant_id(tenant)?;
        match weight {
            Some(weight) => inner.weights.insert(id, weight),
            None => inner.weights.remove(&id),
        };
        Ok(())
    }

    async fn tenant_weight(&self, tenant_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self.lock().weights.get(tenant_id).copied())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
