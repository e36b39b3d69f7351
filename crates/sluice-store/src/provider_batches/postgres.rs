//! [`ProviderBatchStore`] on PostgreSQL
//! (`migrations/0010_provider_batches.sql`).
//!
//! Every time written or compared is the caller's `now`, never the
//! server's clock. A holder's writes check only that it is still the
//! batch's `owner` (see the module's invariants), so they compare no
//! clocks at all.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::JobId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::fill::{self, Totals};
use super::{
    BatchSummary, BatchTarget, CollectLimits, HeldBatch, NewLine, OpenJob, ProviderBatchStore,
    StateCount,
};
use crate::StoreError;

#[derive(Clone, Debug)]
pub struct PgProviderBatchStore {
    pool: PgPool,
}

impl PgProviderBatchStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// `batches` with their open jobs, in the order appended (one query).
    async fn with_jobs(&self, mut batches: Vec<HeldBatch>) -> Result<Vec<HeldBatch>, StoreError> {
        if batches.is_empty() {
            return Ok(batches);
        }
        let ids: Vec<String> = batches.iter().map(|b| b.id.clone()).collect();
        let rows = sqlx::query(
            "SELECT batch_id, job, rerouted FROM provider_batch_jobs \
             WHERE batch_id = ANY($1) AND open ORDER BY batch_id, seq",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: HashMap<String, Vec<OpenJob>> = HashMap::new();
        for row in &rows {
            let batch: String = row.try_get("batch_id")?;
            let job = serde_json::from_value(row.try_get("job")?).map_err(|e| {
                StoreError::Corrupt(format!("a job of provider batch {batch}: {e}"))
            })?;
            let rerouted = row.try_get("rerouted")?;
            jobs.entry(batch)
                .or_default()
                .push(OpenJob { job, rerouted });
        }
        for batch in &mut batches {
            batch.jobs = jobs.remove(&batch.id).unwrap_or_default();
        }
        Ok(batches)
    }

    /// Runs `query`, a holder's write whose one row and column says
    /// whether `$1` is a batch that `$2` holds (and so was written).
    async fn holder_write<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<bool, StoreError> {
        Ok(query.fetch_one(&self.pool).await?.try_get(0)?)
    }
}

const BATCH_COLUMNS: &str = "id, provider, model, endpoint, state, remote_id, created_at, \
     close_at, hedge_at, submitted_at, hedged, lines";

/// A batch's row, without its jobs.
fn batch(row: &PgRow) -> Result<HeldBatch, StoreError> {
    let endpoint: String = row.try_get("endpoint")?;
    let state: String = row.try_get("state")?;
    Ok(HeldBatch {
        id: row.try_get("id")?,
        target: BatchTarget {
            provider: row.try_get("provider")?,
            model: row.try_get("model")?,
            endpoint: (endpoint.parse())
                .map_err(|e| StoreError::Corrupt(format!("a provider batch's endpoint: {e}")))?,
        },
        state: state.parse()?,
        remote_id: row.try_get("remote_id")?,
        created_at: row.try_get("created_at")?,
        close_at: row.try_get("close_at")?,
        hedge_at: row.try_get("hedge_at")?,
        submitted_at: row.try_get("submitted_at")?,
        hedged: row.try_get("hedged")?,
        lines: u64::try_from(row.try_get::<i32, _>("lines")?).unwrap_or(0),
        jobs: Vec::new(),
    })
}

fn totals(row: &PgRow) -> Result<Totals, StoreError> {
    Ok(Totals {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        close_at: row.try_get("close_at")?,
        hedge_at: row.try_get("hedge_at")?,
        lines: u64::try_from(row.try_get::<i32, _>("lines")?).unwrap_or(0),
        bytes: u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0),
    })
}

fn int(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn job_ids(jobs: &[JobId]) -> Vec<String> {
    jobs.iter().map(JobId::to_string).collect()
}

#[async_trait]
impl ProviderBatchStore for PgProviderBatchStore {
    async fn append(
        &self,
        target: &BatchTarget,
        lines: &[NewLine],
        limits: CollectLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let endpoint = target.endpoint.path();
        let mut tx = self.pool.begin().await?;
        // Appends to one target take turns, so that they fill one batch
        // rather than each opening a batch of its own.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "provider_batches {} {} {endpoint}",
                target.provider, target.model
            ))
            .execute(&mut *tx)
            .await?;
        // The row locks also wait for a `begin_submit` of one of these
        // batches; under READ COMMITTED the locked row is then read again,
        // and a batch that left `collecting` meanwhile no longer matches.
        let open = sqlx::query(
            "SELECT id, created_at, close_at, hedge_at, lines, bytes FROM provider_batches \
             WHERE state = 'collecting' AND provider = $1 AND model = $2 AND endpoint = $3 \
               AND lines < $4 AND bytes < $5 \
             ORDER BY created_at, id FOR UPDATE",
        )
        .bind(&target.provider)
        .bind(&target.model)
        .bind(endpoint)
        .bind(int(u64::try_from(limits.max_lines).unwrap_or(u64::MAX)))
        .bind(bigint(limits.max_bytes))
        .fetch_all(&mut *tx)
        .await?;
        let open = open.iter().map(totals).collect::<Result<Vec<_>, _>>()?;
        // Job rows exist only while their batch is not done.
        let wanted: Vec<String> = lines.iter().map(|l| l.job.message.id.to_string()).collect();
        let home = sqlx::query(
            "SELECT job_id, batch_id FROM provider_batch_jobs \
             WHERE job_id = ANY($1) AND NOT rerouted",
        )
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        let home = (home.iter())
            .map(|row| {
                let job: String = row.try_get("job_id")?;
                let job = (job.parse::<JobId>())
                    .map_err(|e| StoreError::Corrupt(format!("a provider batch job: {e}")))?;
                Ok((job, row.try_get("batch_id")?))
            })
            .collect::<Result<HashMap<JobId, String>, StoreError>>()?;

        let plan = fill::plan(open, &home, lines, limits, now);
        if !plan.placed.is_empty() {
            let b = &plan.batches;
            sqlx::query(
                "INSERT INTO provider_batches \
                   (id, provider, model, endpoint, lines, bytes, created_at, close_at, hedge_at) \
                 SELECT t.id, $1, $2, $3, t.lines, t.bytes, t.created_at, t.close_at, t.hedge_at \
                 FROM UNNEST($4::text[], $5::int[], $6::bigint[], $7::timestamptz[], \
                             $8::timestamptz[], $9::timestamptz[]) \
                   AS t(id, lines, bytes, created_at, close_at, hedge_at) \
                 ON CONFLICT (id) DO UPDATE SET lines = EXCLUDED.lines, bytes = EXCLUDED.bytes, \
                   close_at = EXCLUDED.close_at, hedge_at = EXCLUDED.hedge_at",
            )
            .bind(&target.provider)
            .bind(&target.model)
            .bind(endpoint)
            .bind(b.iter().map(|b| b.id.clone()).collect::<Vec<_>>())
            .bind(b.iter().map(|b| int(b.lines)).collect::<Vec<_>>())
            .bind(b.iter().map(|b| bigint(b.bytes)).collect::<Vec<_>>())
            .bind(b.iter().map(|b| b.created_at).collect::<Vec<_>>())
            .bind(b.iter().map(|b| b.close_at).collect::<Vec<_>>())
            .bind(b.iter().map(|b| b.hedge_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            let jobs = (plan.placed.iter())
                .map(|p| serde_json::to_string(&p.line.job))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::unencodable("a batched job", &e))?;
            // A job re-routed from this very batch comes back as a new line.
            sqlx::query(
                "INSERT INTO provider_batch_jobs (batch_id, job_id, seq, job) \
                 SELECT t.batch_id, t.job_id, t.seq, t.job::jsonb \
                 FROM UNNEST($1::text[], $2::text[], $3::int[], $4::text[]) \
                   AS t(batch_id, job_id, seq, job) \
                 ON CONFLICT (batch_id, job_id) DO UPDATE SET seq = EXCLUDED.seq, \
                   job = EXCLUDED.job, open = true, rerouted = false",
            )
            .bind(
                (plan.placed.iter())
                    .map(|p| b[p.batch].id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                (plan.placed.iter())
                    .map(|p| p.line.job.message.id.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(plan.placed.iter().map(|p| int(p.seq)).collect::<Vec<_>>())
            .bind(jobs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(plan.ids)
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<HeldBatch>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "WITH picked AS ( \
               SELECT id FROM provider_batches \
               WHERE state <> 'done' \
                 AND (owner = $1 OR lease_until IS NULL OR lease_until <= $3) \
                 AND (state <> 'collecting' OR close_at <= $3) \
               ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE provider_batches SET owner = $1, lease_until = $2 \
             WHERE id IN (SELECT id FROM picked) RETURNING {BATCH_COLUMNS}"
        ))
        .bind(owner)
        .bind(fill::after(now, lease))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut batches = rows.iter().map(batch).collect::<Result<Vec<_>, _>>()?;
        batches.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        self.with_jobs(batches).await
    }

    async fn begin_submit(&self, id: &str, owner: &str) -> Result<Option<HeldBatch>, StoreError> {
        // Waits for an append that holds the row; the jobs are read after
        // the move has committed, so every job appended before it is seen.
        let row = sqlx::query(&format!(
            "UPDATE provider_batches SET state = 'submitting' \
             WHERE id = $1 AND owner = $2 AND state = 'collecting' RETURNING {BATCH_COLUMNS}"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(self.with_jobs(vec![batch(&row)?]).await?.pop())
    }

    async fn submitted(
        &self,
        id: &str,
        owner: &str,
        remote_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE provider_batches SET state = 'submitted', remote_id = $3, submitted_at = $4 \
             WHERE id = $1 AND owner = $2 AND state = 'submitting'",
        )
        .bind(id)
        .bind(owner)
        .bind(remote_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rerouted(
        &self,
        id: &str,
        owner: &str,
        jobs: &[JobId],
        hedge: bool,
    ) -> Result<bool, StoreError> {
        self.holder_write(
            sqlx::query(
                "WITH held AS ( \
                   UPDATE provider_batches SET hedged = hedged OR $4 \
                   WHERE id = $1 AND owner = $2 RETURNING id), \
                 marked AS ( \
                   UPDATE provider_batch_jobs SET rerouted = true \
                   WHERE batch_id IN (SELECT id FROM held) AND job_id = ANY($3)) \
                 SELECT EXISTS (SELECT 1 FROM held)",
            )
            .bind(id)
            .bind(owner)
            .bind(job_ids(jobs))
            .bind(hedge),
        )
        .await
    }

    async fn settled(&self, id: &str, jobs: &[JobId]) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE provider_batch_jobs SET open = false WHERE batch_id = $1 AND job_id = ANY($2)",
        )
        .bind(id)
        .bind(job_ids(jobs))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish(&self, id: &str, owner: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.holder_write(
            sqlx::query(
                "WITH held AS ( \
                   UPDATE provider_batches SET state = 'done', finished_at = $3, \
                     owner = NULL, lease_until = NULL \
                   WHERE id = $1 AND owner = $2 RETURNING id), \
                 gone AS (DELETE FROM provider_batch_jobs WHERE batch_id IN (SELECT id FROM held)) \
                 SELECT EXISTS (SELECT 1 FROM held)",
            )
            .bind(id)
            .bind(owner)
            .bind(now),
        )
        .await
    }

    async fn renew(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE provider_batches SET lease_until = $2 WHERE owner = $1 AND state <> 'done'",
        )
        .bind(owner)
        .bind(fill::after(now, lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE provider_batches SET owner = NULL, lease_until = NULL \
             WHERE owner = $1 AND state <> 'done'",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list(&self, all: bool, limit: usize) -> Result<Vec<BatchSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLUMNS}, owner, \
             (SELECT count(*) FROM provider_batch_jobs j WHERE j.batch_id = b.id AND j.open) AS open_jobs \
             FROM provider_batches b WHERE $1 OR state <> 'done' \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(all)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchSummary {
                    batch: batch(row)?,
                    open_jobs: u64::try_from(row.try_get::<i64, _>("open_jobs")?).unwrap_or(0),
                    owner: row.try_get("owner")?,
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<Vec<StateCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, state, count(*) AS batches FROM provider_batches \
             WHERE state <> 'done' GROUP BY provider, state",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = (rows.iter())
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(StateCount {
                    provider: row.try_get("provider")?,
                    state: state.parse()?,
                    batches: u64::try_from(row.try_get::<i64, _>("batches")?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        counts.sort_by(|a, b| (&a.provider, a.state as u8).cmp(&(&b.provider, b.state as u8)));
        Ok(counts)
    }
}
