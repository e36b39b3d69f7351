//! The statement that records ledger rows in PostgreSQL, and its
//! arguments: one array per column, so that the statement's text is the
//! same for any number of rows and each connection prepares it once.

use sluice_core::ledger::LedgerRow;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::Postgres;
use uuid::Uuid;

use super::postgres::uuid;
use crate::StoreError;

/// Inserts the rows and, in the same statement, adds each newly recorded
/// row to the daily totals (a job's own row as a job, a repeated call as
/// one) and its whole charge (exact and estimated) to its key's and
/// tenant's month (a row already recorded returns nothing from `ins`, so it
/// adds nothing).
pub const RECORD: &str = "\
WITH ins AS (INSERT INTO usage_ledger (job_id, tenant_id, key_id, model, provider, endpoint, feature, route, \
 metadata, status, prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, \
 cost_micros, saved_micros, cache_hit, queue_wait_ms, provider_latency_ms, finished_at, \
 attempt, estimated_micros, estimated_by, tier, call_index) \
 SELECT job_id, tenant_id, key_id, model, provider, endpoint, feature, route, metadata::jsonb, status, \
 prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, cost_micros, saved_micros, \
 cache_hit, queue_wait_ms, provider_latency_ms, finished_at, attempt, estimated_micros, estimated_by, tier, \
 call_index FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
 $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], \
 $16::int8[], $17::bool[], $18::int8[], $19::int8[], $20::timestamptz[], $21::int4[], $22::int8[], \
 $23::text[], $24::text[], $25::int4[]) \
 AS r(job_id, tenant_id, key_id, model, provider, endpoint, feature, route, metadata, status, \
 prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, cost_micros, saved_micros, \
 cache_hit, queue_wait_ms, provider_latency_ms, finished_at, attempt, estimated_micros, estimated_by, tier, \
 call_index) ON CONFLICT (job_id, attempt, call_index) DO NOTHING RETURNING tenant_id, key_id, finished_at, \
 cost_micros + estimated_micros AS charged_micros, model, provider, feature, route, prompt_tokens, \
 cached_tokens, completion_tokens, cost_micros, saved_micros, attempt, estimated_micros, tier), \
daily AS (INSERT INTO usage_daily (tenant_id, day, model, provider, feature, route, tier, jobs, \
 prompt_tokens, cached_tokens, completion_tokens, cost_micros, saved_micros, repeated_calls, \
 estimated_micros) \
 SELECT tenant_id, (finished_at AT TIME ZONE 'UTC')::date, model, coalesce(provider, ''), \
 coalesce(feature, ''), coalesce(route, ''), coalesce(tier, ''), count(*) FILTER (WHERE attempt = 0), \
 sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(cost_micros), sum(saved_micros), \
 count(*) FILTER (WHERE attempt > 0), sum(estimated_micros) FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 7 \
 ON CONFLICT (tenant_id, day, model, provider, feature, route, tier) DO UPDATE SET \
 jobs = usage_daily.jobs + EXCLUDED.jobs, \
 prompt_tokens = usage_daily.prompt_tokens + EXCLUDED.prompt_tokens, \
 cached_tokens = usage_daily.cached_tokens + EXCLUDED.cached_tokens, \
 completion_tokens = usage_daily.completion_tokens + EXCLUDED.completion_tokens, \
 cost_micros = usage_daily.cost_micros + EXCLUDED.cost_micros, \
 saved_micros = usage_daily.saved_micros + EXCLUDED.saved_micros, \
 repeated_calls = usage_daily.repeated_calls + EXCLUDED.repeated_calls, \
 estimated_micros = usage_daily.estimated_micros + EXCLUDED.estimated_micros), \
by_key AS (INSERT INTO key_spend (key_id, month, cost_micros) \
 SELECT key_id, date_trunc('month', finished_at AT TIME ZONE 'UTC')::date, sum(charged_micros) \
 FROM ins WHERE key_id IS NOT NULL GROUP BY 1, 2 \
 ON CONFLICT (key_id, month) DO UPDATE SET cost_micros = key_spend.cost_micros + EXCLUDED.cost_micros) \
INSERT INTO tenant_spend (tenant_id, month, cost_micros) \
 SELECT tenant_id, date_trunc('month', finished_at AT TIME ZONE 'UTC')::date, sum(charged_micros) \
 FROM ins GROUP BY 1, 2 \
 ON CONFLICT (tenant_id, month) DO UPDATE SET cost_micros = tenant_spend.cost_micros + EXCLUDED.cost_micros";

/// The rows, column by column, in the order [`RECORD`] takes them.
#[derive(Default)]
pub struct Columns {
    job_id: Vec<String>,
    tenant_id: Vec<Uuid>,
    key_id: Vec<Option<Uuid>>,
    model: Vec<String>,
    provider: Vec<Option<String>>,
    endpoint: Vec<&'static str>,
    feature: Vec<Option<String>>,
    route: Vec<Option<String>>,
    metadata: Vec<String>,
    status: Vec<&'static str>,
    prompt_tokens: Vec<i64>,
    cached_tokens: Vec<i64>,
    cache_write_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    cost_micros: Vec<i64>,
    saved_micros: Vec<i64>,
    cache_hit: Vec<bool>,
    queue_wait_ms: Vec<Option<i64>>,
    provider_latency_ms: Vec<Option<i64>>,
    finished_at: Vec<chrono::DateTime<chrono::Utc>>,
    attempt: Vec<i32>,
    estimated_micros: Vec<i64>,
    estimated_by: Vec<Option<&'static str>>,
    tier: Vec<Option<&'static str>>,
    call_index: Vec<i32>,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Columns {
    /// Refuses a row whose tenant or key id is not a uuid.
    pub fn of(rows: &[LedgerRow]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for r in rows {
            c.job_id.push(r.job_id.to_string());
            c.tenant_id.push(uuid(&r.tenant_id, "tenant id")?);
            c.key_id
                .push(r.key_id.as_deref().map(|k| uuid(k, "key id")).transpose()?);
            c.model.push(r.model.clone());
            c.provider.push(r.provider.clone());
            c.endpoint.push(r.endpoint.path());
            c.feature.push(r.label("feature"));
            c.route.push(r.label("route"));
            c.metadata.push(
                serde_json::to_string(&r.metadata)
                    .map_err(|e| StoreError::Corrupt(format!("job {} metadata: {e}", r.job_id)))?,
            );
            c.status.push(r.status.as_str());
            c.prompt_tokens.push(as_i64(r.usage.prompt_tokens));
            c.cached_tokens.push(as_i64(r.usage.cached_tokens));
            c.cache_write_tokens
                .push(as_i64(r.usage.cache_write_tokens));
            c.completion_tokens.push(as_i64(r.usage.completion_tokens));
            c.cost_micros.push(as_i64(r.cost_micros));
            c.saved_micros.push(as_i64(r.saved_micros));
            c.cache_hit.push(r.cache_hit);
            c.queue_wait_ms.push(r.queue_wait_ms.map(as_i64));
            c.provider_latency_ms
                .push(r.provider_latency_ms.map(as_i64));
            c.finished_at.push(r.finished_at);
            c.attempt.push(i32::try_from(r.attempt).unwrap_or(i32::MAX));
            c.estimated_micros.push(as_i64(r.estimated_micros));
            c.estimated_by.push(r.estimated_by.map(|e| e.as_str()));
            c.tier.push(r.tier.map(|t| t.as_str()));
            c.call_index
                .push(i32::try_from(r.call_index).unwrap_or(i32::MAX));
        }
        Ok(c)
    }

    pub fn bind(self, query: Query<'_, Postgres, PgArguments>) -> Query<'_, Postgres, PgArguments> {
        query
            .bind(self.job_id)
            .bind(self.tenant_id)
            .bind(self.key_id)
            .bind(self.model)
            .bind(self.provider)
            .bind(self.endpoint)
            .bind(self.feature)
            .bind(self.route)
            .bind(self.metadata)
            .bind(self.status)
            .bind(self.prompt_tokens)
            .bind(self.cached_tokens)
            .bind(self.cache_write_tokens)
            .bind(self.completion_tokens)
            .bind(self.cost_micros)
            .bind(self.saved_micros)
            .bind(self.cache_hit)
            .bind(self.queue_wait_ms)
            .bind(self.provider_latency_ms)
            .bind(self.finished_at)
            .bind(self.attempt)
            .bind(self.estimated_micros)
            .bind(self.estimated_by)
            .bind(self.tier)
            .bind(self.call_index)
    }
}
