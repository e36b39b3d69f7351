//! [`WebhookStore`] on PostgreSQL (`migrations/0005_webhooks.sql`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::webhook::{EventKind, Secret, SecretPair};
use sluice_core::JobId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{new_id, Attempt, Delivery, DeliveryState, Endpoint, NewDelivery, WebhookStore};
use crate::StoreError;

#[derive(Clone, Debug)]
pub struct PgWebhookStore {
    pool: PgPool,
}

impl PgWebhookStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn tenant_uuid(tenant_id: &str) -> Result<Uuid, StoreError> {
    tenant_id
        .parse()
        .map_err(|_| StoreError::NotFound(format!("no such tenant: {tenant_id:?}")))
}

fn overlap_until(overlap: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default()
}

fn secret(text: &str) -> Result<Secret, StoreError> {
    Secret::parse(text).map_err(|e| StoreError::Corrupt(format!("a stored webhook secret: {e}")))
}

fn pair(row: &PgRow) -> Result<SecretPair, StoreError> {
    let previous: Option<String> = row.try_get("previous_secret")?;
    let until: Option<DateTime<Utc>> = row.try_get("previous_until")?;
    Ok(SecretPair {
        current: secret(row.try_get("secret")?)?,
        previous: match (previous, until) {
            (Some(p), Some(u)) => Some((secret(&p)?, u)),
            _ => None,
        },
    })
}

fn events_of(texts: Vec<String>) -> Vec<EventKind> {
    texts
        .iter()
        .filter_map(|t| serde_json::from_value(serde_json::Value::String(t.clone())).ok())
        .collect()
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id::text AS tenant_id, url, events, created_at, disabled_at, disabled_reason, secret, previous_secret, previous_until";

fn endpoint(row: &PgRow) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        events: events_of(row.try_get("events")?),
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
        disabled_reason: row.try_get("disabled_reason")?,
    })
}

const DELIVERY_COLUMNS: &str = "id, tenant_id::text AS tenant_id, job_id, webhook_id, event, target, url, body, trace_id, state, attempts, next_attempt_at, created_at, updated_at";

fn delivery(row: &PgRow) -> Result<Delivery, StoreError> {
    let target: String = row.try_get("target")?;
    let event: String = row.try_get("event")?;
    let job_id: String = row.try_get("job_id")?;
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        job_id: job_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("job id {job_id:?}")))?,
        webhook_id: row.try_get("webhook_id")?,
        event: events_of(vec![event.clone()])
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("event {event:?}")))?,
        endpoint_id: (!target.is_empty()).then_some(target),
        url: row.try_get("url")?,
        body: row.try_get("body")?,
        trace_id: row.try_get("trace_id")?,
        state: state.parse()?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn attempt(row: &PgRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        delivery_id: row.try_get("delivery_id")?,
        attempt: u32::try_from(row.try_get::<i32, _>("attempt")?).unwrap_or(0),
        attempted_at: row.try_get("attempted_at")?,
        status_code: row
            .try_get::<Option<i32>, _>("status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        latency_ms: u64::try_from(row.try_get::<i64, _>("latency_ms")?).unwrap_or(0),
        error: row.try_get("error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}

#[async_trait]
impl WebhookStore for PgWebhookStore {
    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        overlap: Duration,
    ) -> Result<Secret, StoreError> {
        let new = Secret::generate();
        sqlx::query(
            "INSERT INTO webhook_secrets (tenant_id, secret) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET secret = EXCLUDED.secret, \
               previous_secret = webhook_secrets.secret, previous_until = $3, rotated_at = now()",
        )
        .bind(tenant_uuid(tenant_id)?)
        .bind(new.expose())
        .bind(overlap_until(overlap))
        .execute(&self.pool)
        .await?;
        Ok(new)
    }

    async fn tenant_secrets(&self, tenant_id: &str) -> Result<Option<SecretPair>, StoreError> {
        let row = sqlx::query(
            "SELECT secret, previous_secret, previous_until FROM webhook_secrets WHERE tenant_id = $1",
        )
        .bind(tenant_uuid(tenant_id)?)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pair).transpose()
    }

    async fn create_endpoint(
        &self,
        tenant_id: &str,
        url: &str,
        events: &[EventKind],
    ) -> Result<(Endpoint, Secret), StoreError> {
        let secret = Secret::generate();
        let events: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        let row = sqlx::query(&format!(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(new_id())
        .bind(tenant_uuid(tenant_id)?)
        .bind(url)
        .bind(&events)
        .bind(secret.expose())
        .fetch_one(&self.pool)
        .await?;
        Ok((endpoint(&row)?, secret))
    }

    async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"
        ))
        .bind(tenant_uuid(tenant_id)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint).collect()
    }

    async fn has_endpoints(&self, tenant_id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND disabled_at IS NULL)",
        )
        .bind(tenant_uuid(tenant_id)?)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_uuid(tenant_id)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rotate_endpoint_secret(
        &self,
        tenant_id: &str,
        id: &str,
        overlap: Duration,
    ) -> Result<Option<Secret>, StoreError> {
        let new = Secret::generate();
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $3, secret = $4 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_uuid(tenant_id)?)
        .bind(id)
        .bind(overlap_until(overlap))
        .bind(new.expose())
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() > 0).then_some(new))
    }

    async fn endpoint(&self, id: &str) -> Result<Option<(Endpoint, SecretPair)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((endpoint(&r)?, pair(&r)?))).transpose()
    }

    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2 \
             WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_delivery(&self, new: &NewDelivery) -> Result<Delivery, StoreError> {
        let target = new.endpoint_id.clone().unwrap_or_default();
        // Insert, or touch the existing row so that RETURNING gives it.
        let row = sqlx::query(&format!(
            "INSERT INTO webhook_deliveries (id, tenant_id, job_id, webhook_id, event, target, url, body, trace_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (webhook_id, target) DO UPDATE SET webhook_id = EXCLUDED.webhook_id \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(new_id())
        .bind(tenant_uuid(&new.tenant_id)?)
        .bind(new.job_id.to_string())
        .bind(&new.webhook_id)
        .bind(new.event.as_str())
        .bind(target)
        .bind(&new.url)
        .bind(&new.body)
        .bind(&new.trace_id)
        .fetch_one(&self.pool)
        .await?;
        delivery(&row)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery).transpose()
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        // One statement (one round trip): the attempt's row and the
        // delivery's state change together.
        sqlx::query(
            "WITH attempt AS ( \
               INSERT INTO webhook_attempts \
                 (delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_attempt_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt) DO NOTHING) \
             UPDATE webhook_deliveries SET attempts = GREATEST(attempts, $2), state = $8, \
               next_attempt_at = $7, updated_at = now() WHERE id = $1",
        )
        .bind(&attempt.delivery_id)
        .bind(i32::try_from(attempt.attempt).unwrap_or(i32::MAX))
        .bind(attempt.attempted_at)
        .bind(attempt.status_code.map(i32::from))
        .bind(i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX))
        .bind(&attempt.error)
        .bind(attempt.next_attempt_at)
        .bind(state.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliveries_of(
        &self,
        tenant_id: &str,
        job_id: JobId,
    ) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE tenant_id = $1 AND job_id = $2 ORDER BY id"
        ))
        .bind(tenant_uuid(tenant_id)?)
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let deliveries: Vec<Delivery> = rows.iter().map(delivery).collect::<Result<_, _>>()?;
        let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
        let attempts = sqlx::query(
            "SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_attempt_at \
             FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let attempts: Vec<Attempt> = attempts.iter().map(attempt).collect::<Result<_, _>>()?;
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let mine = attempts
                    .iter()
                    .filter(|a| a.delivery_id == d.id)
                    .cloned()
                    .collect();
                (d, mine)
            })
            .collect())
    }

    async fn reopen(&self, tenant_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(tenant_uuid(tenant_id)?)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery).transpose()
    }
}
