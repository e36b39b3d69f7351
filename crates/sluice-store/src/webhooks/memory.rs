//! [`WebhookStore`] in maps, for unit tests and `sluice dev`, with the
//! PostgreSQL one's semantics.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sluice_core::webhook::{EventKind, Secret, SecretPair};
use sluice_core::JobId;

use super::{new_id, Attempt, Delivery, DeliveryState, Endpoint, NewDelivery, WebhookStore};
use crate::StoreError;

#[derive(Debug, Default)]
pub struct MemoryWebhookStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tenant_secrets: BTreeMap<String, SecretPair>,
    endpoints: BTreeMap<String, (Endpoint, SecretPair)>,
    /// By id (ULIDs: in creation order).
    deliveries: BTreeMap<String, Delivery>,
    attempts: BTreeMap<(String, u32), Attempt>,
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn rotated(old: Option<&SecretPair>, overlap: Duration) -> (SecretPair, Secret) {
    let new = Secret::generate();
    let until = Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default();
    let pair = SecretPair {
        current: new.clone(),
        previous: old.map(|o| (o.current.clone(), until)),
    };
    (pair, new)
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        overlap: Duration,
    ) -> Result<Secret, StoreError> {
        let mut inner = self.lock();
        let (pair, new) = rotated(inner.tenant_secrets.get(tenant_id), overlap);
        inner.tenant_secrets.insert(tenant_id.to_owned(), pair);
        Ok(new)
    }

    async fn tenant_secrets(&self, tenant_id: &str) -> Result<Option<SecretPair>, StoreError> {
        Ok(self.lock().tenant_secrets.get(tenant_id).cloned())
    }

    async fn create_endpoint(
        &self,
        tenant_id: &str,
        url: &str,
        events: &[EventKind],
    ) -> Result<(Endpoint, Secret), StoreError> {
        let secret = Secret::generate();
        let endpoint = Endpoint {
            id: new_id(),
            tenant_id: tenant_id.to_owned(),
            url: url.to_owned(),
            events: events.to_vec(),
            created_at: Utc::now(),
            disabled_at: None,
            disabled_reason: None,
        };
        let pair = SecretPair {
            current: secret.clone(),
            previous: None,
        };
        self.lock()
            .endpoints
            .insert(endpoint.id.clone(), (endpoint.clone(), pair));
        Ok((endpoint, secret))
    }

    async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .values()
            .filter(|(e, _)| e.tenant_id == tenant_id)
            .map(|(e, _)| e.clone())
            .collect())
    }

    async fn has_endpoints(&self, tenant_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .values()
            .any(|(e, _)| e.tenant_id == tenant_id && e.disabled_at.is_none()))
    }

    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let mine = inner
            .endpoints
            .get(id)
            .is_some_and(|(e, _)| e.tenant_id == tenant_id);
        if mine {
            inner.endpoints.remove(id);
        }
        Ok(mine)
    }

    async fn rotate_endpoint_secret(
        &self,
        tenant_id: &str,
        id: &str,
        overlap: Duration,
    ) -> Result<Option<Secret>, StoreError> {
        let mut inner = self.lock();
        let Some((endpoint, pair)) = inner.endpoints.get_mut(id) else {
            return Ok(None);
        };
        if endpoint.tenant_id != tenant_id {
            return Ok(None);
        }
        let (next, new) = rotated(Some(pair), overlap);
        *pair = next;
        Ok(Some(new))
    }

    async fn endpoint(&self, id: &str) -> Result<Option<(Endpoint, SecretPair)>, StoreError> {
        Ok(self.lock().endpoints.get(id).cloned())
    }

    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        if let Some((endpoint, _)) = self.lock().endpoints.get_mut(id) {
            if endpoint.disabled_at.is_none() {
                endpoint.disabled_at = Some(Utc::now());
                endpoint.disabled_reason = Some(reason.to_owned());
            }
        }
        Ok(())
    }

    async fn open_delivery(&self, new: &NewDelivery) -> Result<Delivery, StoreError> {
        let mut inner = self.lock();
        if let Some(open) = inner
            .deliveries
            .values()
            .find(|d| d.webhook_id == new.webhook_id && d.endpoint_id == new.endpoint_id)
        {
            return Ok(open.clone());
        }
        let now = Utc::now();
        let delivery = Delivery {
            id: new_id(),
            tenant_id: new.tenant_id.clone(),
            job_id: new.job_id,
            webhook_id: new.webhook_id.clone(),
            event: new.event,
            endpoint_id: new.endpoint_id.clone(),
            url: new.url.clone(),
            body: new.body.clone(),
            trace_id: new.trace_id.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        };
        inner
            .deliveries
            .insert(delivery.id.clone(), delivery.clone());
        Ok(delivery)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(self.lock().deliveries.get(id).cloned())
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner
            .attempts
            .entry((attempt.delivery_id.clone(), attempt.attempt))
            .or_insert_with(|| attempt.clone());
        if let Some(d) = inner.deliveries.get_mut(&attempt.delivery_id) {
            d.attempts = d.attempts.max(attempt.attempt);
            d.state = state;
            d.next_attempt_at = attempt.next_attempt_at;
            d.updated_at = Utc::now();
        }
        Ok(())
    }

    async fn deliveries_of(
        &self,
        tenant_id: &str,
        job_id: JobId,
    ) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .deliveries
            .values()
            .filter(|d| d.tenant_id == tenant_id && d.job_id == job_id)
            .map(|d| {
                let attempts = inner
                    .attempts
                    .values()
                    .filter(|a| a.delivery_id == d.id)
                    .cloned()
                    .collect();
                (d.clone(), attempts)
            })
            .collect())
    }

    async fn reopen(&self, tenant_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        let mut inner = self.lock();
        Ok(inner
            .deliveries
            .get_mut(id)
            .filter(|d| d.tenant_id == tenant_id)
            .map(|d| {
                d.state = DeliveryState::Pending;
                d.next_attempt_at = Some(Utc::now());
                d.updated_at = Utc::now();
                d.clone()
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_delivery(job: JobId) -> NewDelivery {
        NewDelivery {
            tenant_id: "t".into(),
            job_id: job,
            webhook_id: sluice_core::webhook::webhook_id(job, EventKind::Succeeded),
            event: EventKind::Succeeded,
            endpoint_id: None,
            url: "https://example.com/h".into(),
            body: "{}".into(),
            trace_id: None,
        }
    }

    #[tokio::test]
    async fn a_delivery_opens_once_and_keeps_every_attempt() {
        let store = MemoryWebhookStore::new();
        let job = JobId::new();
        let first = store.open_delivery(&new_delivery(job)).await.unwrap();
        let again = store.open_delivery(&new_delivery(job)).await.unwrap();
        assert_eq!(first.id, again.id);
        for n in 1..=2 {
            let attempt = Attempt {
                delivery_id: first.id.clone(),
                attempt: n,
                attempted_at: Utc::now(),
                status_code: Some(500),
                latency_ms: 3,
                error: Some("500".into()),
                next_attempt_at: None,
            };
            store
                .record_attempt(&attempt, DeliveryState::Pending)
                .await
                .unwrap();
        }
        let listed = store.deliveries_of("t", job).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.attempts, 2);
        assert_eq!(listed[0].1.len(), 2);
        assert!(store.deliveries_of("other", job).await.unwrap().is_empty());
        assert!(store.reopen("other", &first.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_rotation_keeps_the_old_secret_for_the_overlap() {
        let store = MemoryWebhookStore::new();
        let first = store
            .rotate_tenant_secret("t", Duration::ZERO)
            .await
            .unwrap();
        let second = store
            .rotate_tenant_secret("t", Duration::from_secs(60))
            .await
            .unwrap();
        let live = store
            .tenant_secrets("t")
            .await
            .unwrap()
            .unwrap()
            .live(Utc::now());
        assert_eq!(live, vec![second, first]);
    }
}
