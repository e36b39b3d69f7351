//! [`FileStore`] on PostgreSQL (`migrations/0011_files.sql`): an upload is
//! one transaction (the file's row, then each part as it fills), so a file
//! is visible only once all of it is stored; content is read back one part
//! per query.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{Content, FileLimits, FileMeta, FileQuery, FileStore, NewFile, PutError, Uploaded};
use crate::usage::uuid;
use crate::StoreError;

#[derive(Clone, Debug)]
pub struct PgFileStore {
    pool: PgPool,
}

impl PgFileStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str =
    "id, tenant_id::text AS tenant_id, purpose, filename, bytes, lines, created_at, expires_at";

fn meta(row: &PgRow) -> Result<FileMeta, StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(name)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("a file's {name} is {n}")))
    };
    Ok(FileMeta {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        purpose: row.try_get("purpose")?,
        filename: row.try_get("filename")?,
        bytes: count("bytes")?,
        lines: count("lines")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl FileStore for PgFileStore {
    async fn put(
        &self,
        file: NewFile,
        limits: FileLimits,
        content: BoxStream<'_, Result<Bytes, String>>,
    ) -> Result<FileMeta, PutError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        sqlx::query(
            "INSERT INTO files (id, tenant_id, purpose, filename, bytes, lines, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, $6)",
        )
        .bind(&file.id)
        .bind(uuid(&file.tenant_id, "tenant id")?)
        .bind(&file.purpose)
        .bind(&file.filename)
        .bind(file.created_at)
        .bind(file.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        // A failure drops the transaction: nothing of the file stays.
        let mut upload = Uploaded::new(content, limits);
        let mut seq: i32 = 0;
        while let Some(data) = upload.next_part().await? {
            sqlx::query("INSERT INTO file_parts (file_id, seq, data) VALUES ($1, $2, $3)")
                .bind(&file.id)
                .bind(seq)
                .bind(data)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            seq += 1;
        }
        let (bytes, lines) = upload.totals();
        sqlx::query("UPDATE files SET bytes = $2, lines = $3 WHERE id = $1")
            .bind(&file.id)
            .bind(signed(bytes))
            .bind(signed(lines))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(file.meta(bytes, lines))
    }

    async fn get(
        &self,
        tenant_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FileMeta>, StoreError> {
        let tenant_id = uuid(tenant_id, "tenant id")?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM files WHERE id = $1 AND tenant_id = $2 \
             AND (expires_at IS NULL OR expires_at > $3)"
        ))
        .bind(id)
        .bind(tenant_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(meta).transpose()
    }

    async fn list(
        &self,
        tenant_id: &str,
        query: &FileQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<FileMeta>, StoreError> {
        let tenant_id = uuid(tenant_id, "tenant id")?;
        let (after, order) = if query.oldest_first {
            ("id > $3", "ASC")
        } else {
            ("id < $3", "DESC")
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM files WHERE tenant_id = $1 \
             AND (expires_at IS NULL OR expires_at > $2) \
             AND ($3::text IS NULL OR {after}) AND ($4::text IS NULL OR purpose = $4) \
             ORDER BY id {order} LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(now)
        .bind(&query.after)
        .bind(&query.purpose)
        .bind(signed(query.limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(meta).collect()
    }

    async fn read(
        &self,
        tenant_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Content>, StoreError> {
        if self.get(tenant_id, id, now).await?.is_none() {
            return Ok(None);
        }
        let (pool, id) = (self.pool.clone(), id.to_owned());
        let parts = futures::stream::try_unfold(0i32, move |seq| {
            let (pool, id) = (pool.clone(), id.clone());
            async move {
                let data: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT data FROM file_parts WHERE file_id = $1 AND seq = $2",
                )
                .bind(&id)
                .bind(seq)
                .fetch_optional(&pool)
                .await?;
                Ok::<_, StoreError>(data.map(|data| (Bytes::from(data), seq + 1)))
            }
        });
        Ok(Some(parts.boxed()))
    }

    async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let tenant_id = uuid(tenant_id, "tenant id")?;
        let done = sqlx::query("DELETE FROM files WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM files WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
