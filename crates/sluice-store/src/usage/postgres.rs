//! The ledger in PostgreSQL (`usage_ledger`, migration 0003). Rows go in
//! with one insert per batch (see `pg_record`); `ON CONFLICT (job_id, attempt,
//! call_index) DO NOTHING` keeps a redelivered job from being counted twice. Reports group in SQL
//! over the (tenant_id, finished_at) index.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sluice_core::ledger::LedgerRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{GroupBy, UsageLedger, UsageLine, UsageQuery};
use crate::StoreError;

pub struct PgLedger {
    pool: PgPool,
}

impl PgLedger {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// The SQL of a group key over the ledger; fixed text, never caller input.
fn column(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Model => "model",
        GroupBy::Feature => "feature",
        GroupBy::Route => "route",
        GroupBy::Day => "to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        GroupBy::Provider => "provider",
        GroupBy::Tenant => "tenant_id::text",
        GroupBy::Tier => "tier",
    }
}

/// The same over the daily totals (where a missing label is '').
fn daily_column(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Model => "model",
        GroupBy::Feature => "nullif(feature, '')",
        GroupBy::Route => "nullif(route, '')",
        GroupBy::Day => "to_char(day, 'YYYY-MM-DD')",
        GroupBy::Provider => "nullif(provider, '')",
        GroupBy::Tenant => "tenant_id::text",
        GroupBy::Tier => "nullif(tier, '')",
    }
}

/// Whether `t` is a midnight (UTC): a range of whole days reads the daily totals.
fn is_midnight(t: &chrono::DateTime<chrono::Utc>) -> bool {
    t.time() == chrono::NaiveTime::MIN
}

pub(crate) fn uuid(text: &str, what: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("{what} {text:?} is not a uuid")))
}

#[async_trait]
impl UsageLedger for PgLedger {
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        super::pg_record::Columns::of(rows)?
            .bind(sqlx::query(super::pg_record::RECORD))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn spend(&self, tenant_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        let tenant = uuid(tenant_id, "tenant id")?;
        let spent: Option<i64> = sqlx::query_scalar(
            "SELECT cost_micros FROM tenant_spend WHERE tenant_id = $1 AND month = $2",
        )
        .bind(tenant)
        .bind(month)
        .fetch_optional(&self.pool)
        .await?;
        Ok(u64::try_from(spent.unwrap_or(0)).unwrap_or(0))
    }

    async fn batch_usage(&self, tenant_id: &str, batch_id: &str) -> Result<UsageLine, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE attempt = 0) AS jobs, \
               count(*) FILTER (WHERE attempt > 0) AS repeated_calls, \
               coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens, \
               coalesce(sum(cached_tokens), 0)::bigint AS cached_tokens, \
               coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens, \
               coalesce(sum(cost_micros), 0)::bigint AS cost_micros, \
               coalesce(sum(saved_micros), 0)::bigint AS saved_micros, \
               coalesce(sum(estimated_micros), 0)::bigint AS estimated_micros \
             FROM usage_ledger \
             WHERE metadata ? 'batch_id' AND metadata ->> 'batch_id' = $2 AND tenant_id = $1",
        )
        .bind(uuid(tenant_id, "tenant id")?)
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await?;
        let n = |name: &str| -> Result<u64, StoreError> {
            let v: i64 = row.try_get(name)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(UsageLine {
            group: Default::default(),
            jobs: n("jobs")?,
            prompt_tokens: n("prompt_tokens")?,
            cached_tokens: n("cached_tokens")?,
            completion_tokens: n("completion_tokens")?,
            cost_micros: n("cost_micros")?,
            saved_micros: n("saved_micros")?,
            repeated_calls: n("repeated_calls")?,
            estimated_micros: n("estimated_micros")?,
        })
    }

    async fn key_spend(&self, key_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        let key = uuid(key_id, "key id")?;
        let spent: Option<i64> = sqlx::query_scalar(
            "SELECT cost_micros FROM key_spend WHERE key_id = $1 AND month = $2",
        )
        .bind(key)
        .bind(month)
        .fetch_optional(&self.pool)
        .await?;
        Ok(u64::try_from(spent.unwrap_or(0)).unwrap_or(0))
    }

    async fn report(&self, q: &UsageQuery) -> Result<Vec<UsageLine>, StoreError> {
        let daily = is_midnight(&q.from) && is_midnight(&q.to);
        let keys: Vec<String> = q
            .group_by
            .iter()
            .enumerate()
            .map(|(i, g)| {
                format!(
                    "{} AS g{i}",
                    if daily { daily_column(*g) } else { column(*g) }
                )
            })
            .collect();
        let mut sql = String::from("SELECT ");
        for k in &keys {
            sql.push_str(k);
            sql.push_str(", ");
        }
        let sums = "sum(prompt_tokens)::bigint AS prompt_tokens, \
             sum(cached_tokens)::bigint AS cached_tokens, sum(completion_tokens)::bigint AS completion_tokens, \
             sum(cost_micros)::bigint AS cost_micros, sum(saved_micros)::bigint AS saved_micros, \
             sum(estimated_micros)::bigint AS estimated_micros";
        if daily {
            sql.push_str(&format!(
                "sum(jobs)::bigint AS jobs, sum(repeated_calls)::bigint AS repeated_calls, {sums} FROM usage_daily \
                 WHERE day >= ($1 AT TIME ZONE 'UTC')::date AND day < ($2 AT TIME ZONE 'UTC')::date"
            ));
        } else {
            sql.push_str(&format!(
                "count(*) FILTER (WHERE attempt = 0) AS jobs, \
                 count(*) FILTER (WHERE attempt > 0) AS repeated_calls, {sums} \
                 FROM usage_ledger WHERE finished_at >= $1 AND finished_at < $2"
            ));
        }
        let tenant = q
            .tenant_id
            .as_deref()
            .map(|t| uuid(t, "tenant id"))
            .transpose()?;
        if tenant.is_some() {
            sql.push_str(" AND tenant_id = $3");
        }
        if !q.group_by.is_empty() {
            let positions: Vec<String> = (1..=q.group_by.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {0} ORDER BY {0}", positions.join(", ")));
        }
        let mut query = sqlx::query(&sql).bind(q.from).bind(q.to);
        if let Some(t) = tenant {
            query = query.bind(t);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let number = |row: &sqlx::postgres::PgRow, name: &str| -> Result<u64, StoreError> {
            let v: Option<i64> = row.try_get(name)?;
            Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let jobs = number(&row, "jobs")?;
            let repeated_calls = number(&row, "repeated_calls")?;
            if jobs == 0 && repeated_calls == 0 {
                continue;
            }
            let mut group = BTreeMap::new();
            for (i, g) in q.group_by.iter().enumerate() {
                let v: Option<String> = row.try_get(format!("g{i}").as_str())?;
                group.insert(g.as_str().to_owned(), v);
            }
            out.push(UsageLine {
                group,
                jobs,
                prompt_tokens: number(&row, "prompt_tokens")?,
                cached_tokens: number(&row, "cached_tokens")?,
                completion_tokens: number(&row, "completion_tokens")?,
                cost_micros: number(&row, "cost_micros")?,
                saved_micros: number(&row, "saved_micros")?,
                repeated_calls,
                estimated_micros: number(&row, "estimated_micros")?,
            });
        }
        Ok(out)
    }
}
