//! [`BatchStore`] on PostgreSQL (`migrations/0012_batches.sql`). Leases
//! are taken with `FOR UPDATE SKIP LOCKED`, and every holder's statement
//! names its owner in its `WHERE`, so a write of a process that lost its
//! lease changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_core::JobId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{Batch, BatchLine, BatchStatus, BatchStore, LineError, LinePage, LineState};
use crate::usage::uuid;
use crate::StoreError;

#[derive(Clone, Debug)]
pub struct PgBatchStore {
    pool: PgPool,
}

impl PgBatchStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "id, tenant_id::text AS tenant_id, tenant_name, key_id, input_file_id, \
     endpoint, completion_window, metadata, status, errors, total, completed, failed, tokens, \
     expanded, output_file_id, error_file_id, created_at, expires_at, in_progress_at, \
     finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at";

/// The statuses a driver still works on, as SQL.
const ACTIVE: &str = "('validating', 'in_progress', 'finalizing', 'cancelling')";

/// Lines inserted per statement.
const LINES_PER_INSERT: usize = 5_000;

fn count(row: &PgRow, name: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(name)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("a batch's {name} is {n}")))
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn batch(row: &PgRow) -> Result<Batch, StoreError> {
    let errors: serde_json::Value = row.try_get("errors")?;
    let errors: Vec<LineError> = serde_json::from_value(errors)
        .map_err(|e| StoreError::Corrupt(format!("a batch's errors: {e}")))?;
    let status: String = row.try_get("status")?;
    Ok(Batch {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        key_id: row.try_get("key_id")?,
        input_file_id: row.try_get("input_file_id")?,
        endpoint: row.try_get("endpoint")?,
        completion_window: row.try_get("completion_window")?,
        metadata: row.try_get("metadata")?,
        status: BatchStatus::parse(&status)?,
        errors,
        total: count(row, "total")?,
        completed: count(row, "completed")?,
        failed: count(row, "failed")?,
        tokens: count(row, "tokens")?,
        expanded: count(row, "expanded")?,
        output_file_id: row.try_get("output_file_id")?,
        error_file_id: row.try_get("error_file_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        in_progress_at: row.try_get("in_progress_at")?,
        finalizing_at: row.try_get("finalizing_at")?,
        completed_at: row.try_get("completed_at")?,
        failed_at: row.try_get("failed_at")?,
        expired_at: row.try_get("expired_at")?,
        cancelling_at: row.try_get("cancelling_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

fn line(row: &PgRow) -> Result<BatchLine, StoreError> {
    let n: i32 = row.try_get("line")?;
    let job: String = row.try_get("job_id")?;
    let state: String = row.try_get("state")?;
    Ok(BatchLine {
        line: u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("batch line {n}")))?,
        custom_id: row.try_get("custom_id")?,
        job_id: job
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("batch line job id {job:?}")))?,
        state: LineState::parse(&state)?,
    })
}

fn line_number(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl BatchStore for PgBatchStore {
    async fn create(&self, b: &Batch) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, tenant_name, key_id, input_file_id, endpoint, \
             completion_window, metadata, status, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&b.id)
        .bind(uuid(&b.tenant_id, "tenant id")?)
        .bind(&b.tenant_name)
        .bind(&b.key_id)
        .bind(&b.input_file_id)
        .bind(&b.endpoint)
        .bind(&b.completion_window)
        .bind(&b.metadata)
        .bind(b.status.as_str())
        .bind(b.created_at)
        .bind(b.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM batches WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(uuid(tenant, "tenant id")?)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch).transpose()
    }

    async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM batches WHERE tenant_id = $1 AND ($2::text IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(uuid(tenant, "tenant id")?)
        .bind(after)
        .bind(signed(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch).collect()
    }

    async fn cancel(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Batch>, StoreError> {
        let tenant = uuid(tenant, "tenant id")?;
        sqlx::query(
            "UPDATE batches SET status = 'cancelling', cancelling_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND status IN ('validating', 'in_progress')",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM batches WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch).transpose()
    }

    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(&format!(
            "UPDATE batches SET lease_owner = $1, lease_until = $2 WHERE id IN ( \
               SELECT id FROM batches WHERE status IN {ACTIVE} \
                 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $3) \
               ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(signed(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows.iter().map(batch).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|b| b.created_at);
        Ok(claimed)
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn queued_tokens(&self, tenant: &str, except: &str) -> Result<u64, StoreError> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT sum(tokens)::bigint FROM batches \
             WHERE tenant_id = $1 AND id <> $2 AND status = 'in_progress'",
        )
        .bind(uuid(tenant, "tenant id")?)
        .bind(except)
        .fetch_one(&self.pool)
        .await?;
        Ok(sum.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    async fn fail(
        &self,
        id: &str,
        owner: &str,
        errors: &[LineError],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let errors = serde_json::to_value(errors)
            .map_err(|e| StoreError::Corrupt(format!("a batch's errors: {e}")))?;
        let done = sqlx::query(
            "UPDATE batches SET status = 'failed', errors = $3, failed_at = $4, \
               lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'validating'",
        )
        .bind(id)
        .bind(owner)
        .bind(errors)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn begin(
        &self,
        id: &str,
        owner: &str,
        lines: &[BatchLine],
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE batches SET status = 'in_progress', total = $3, tokens = $4, in_progress_at = $5 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'validating'",
        )
        .bind(id)
        .bind(owner)
        .bind(signed(lines.len() as u64))
        .bind(signed(tokens))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for chunk in lines.chunks(LINES_PER_INSERT) {
            let numbers: Vec<i32> = chunk.iter().map(|l| line_number(l.line)).collect();
            let custom: Vec<&str> = chunk.iter().map(|l| l.custom_id.as_str()).collect();
            let jobs: Vec<String> = chunk.iter().map(|l| l.job_id.to_string()).collect();
            sqlx::query(
                "INSERT INTO batch_lines (batch_id, line, custom_id, job_id) \
                 SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[])",
            )
            .bind(id)
            .bind(numbers)
            .bind(custom)
            .bind(jobs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // Fresh statistics for the lines just written, so that following
        // them is planned as probes by key, not scans of every line.
        sqlx::query("ANALYZE batch_lines")
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    async fn expanded(
        &self,
        id: &str,
        owner: &str,
        upto: u64,
        replaced: &[(u64, JobId)],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE batches SET expanded = GREATEST(expanded, $3) \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(signed(upto))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if !replaced.is_empty() {
            let numbers: Vec<i32> = replaced.iter().map(|(l, _)| line_number(*l)).collect();
            let jobs: Vec<String> = replaced.iter().map(|(_, j)| j.to_string()).collect();
            sqlx::query(
                "UPDATE batch_lines SET job_id = r.job_id \
                 FROM UNNEST($2::int[], $3::text[]) AS r(line, job_id) \
                 WHERE batch_id = $1 AND batch_lines.line = r.line",
            )
            .bind(id)
            .bind(numbers)
            .bind(jobs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn lines(&self, id: &str, page: LinePage) -> Result<Vec<BatchLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, custom_id, job_id, state FROM batch_lines \
             WHERE batch_id = $1 AND line > $2 AND (NOT $3 OR state = 'open') \
             ORDER BY line LIMIT $4",
        )
        .bind(id)
        .bind(page.after.map_or(-1, line_number))
        .bind(page.open_only)
        .bind(signed(page.limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(line).collect()
    }

    async fn settle(
        &self,
        id: &str,
        owner: &str,
        ends: &[(u64, LineState)],
    ) -> Result<bool, StoreError> {
        let numbers: Vec<i32> = ends.iter().map(|(l, _)| line_number(*l)).collect();
        let states: Vec<&str> = ends.iter().map(|(_, s)| s.as_str()).collect();
        // One statement: the lines that were still open change, and the
        // batch counts exactly those. Each line is found by its key
        // (`batch_id = $1`, not through the lease's row), so the lines are
        // read by the primary key, one probe per line ended.
        let done = sqlx::query(
            "WITH holder AS (SELECT id FROM batches WHERE id = $1 AND lease_owner = $2 FOR UPDATE), \
             ended AS ( \
               UPDATE batch_lines SET state = e.state \
               FROM UNNEST($3::int[], $4::text[]) AS e(line, state) \
               WHERE batch_lines.batch_id = $1 AND batch_lines.line = e.line \
                 AND batch_lines.state = 'open' AND EXISTS (SELECT 1 FROM holder) \
               RETURNING e.state) \
             UPDATE batches SET \
               completed = completed + (SELECT count(*) FROM ended WHERE state = 'succeeded'), \
               failed = failed + (SELECT count(*) FROM ended WHERE state = 'failed') \
             WHERE id IN (SELECT id FROM holder)",
        )
        .bind(id)
        .bind(owner)
        .bind(numbers)
        .bind(states)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finalize(
        &self,
        id: &str,
        owner: &str,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET status = 'finalizing', finalizing_at = $3, \
               expired_at = CASE WHEN $4 THEN $3 END \
             WHERE id = $1 AND lease_owner = $2 AND status = 'in_progress'",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .bind(expired)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        id: &str,
        owner: &str,
        output_file_id: Option<&str>,
        error_file_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET \
               status = CASE WHEN status = 'cancelling' THEN 'cancelled' \
                             WHEN expired_at IS NOT NULL THEN 'expired' ELSE 'completed' END, \
               completed_at = CASE WHEN status = 'finalizing' AND expired_at IS NULL THEN $3 END, \
               cancelled_at = CASE WHEN status = 'cancelling' THEN $3 END, \
               output_file_id = $4, error_file_id = $5, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('finalizing', 'cancelling')",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .bind(output_file_id)
        .bind(error_file_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
