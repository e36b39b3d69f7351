//! Tenants and keys in PostgreSQL, and the schema migrations.
//!
//! Queries are built at run time (`sqlx::query`), so building needs no
//! database. Ids are UUIDv7 made here, so they sort by creation time.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use super::keys::{display_prefix, generate_key, hash_key, looks_like_key};
use super::{ApiKey, NewKey, Principal, Tenant, TenantStore};
use crate::StoreError;

/// The migrations in `migrations/` at the workspace root, embedded.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Connections per process: requests only touch PostgreSQL to check keys.
const MAX_CONNECTIONS: u32 = 10;
/// How long a caller waits for a connection before the store counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest any statement on the pool's connections may run before
/// PostgreSQL cancels it (SQLSTATE 57014, a transient store error). A
/// statement past it is stuck (waiting on a lock a dead session holds, or
/// a runaway plan), and ending it gives its connection, one of
/// `MAX_CONNECTIONS`, back. The roles' statements take milliseconds (key
/// checks, ledger inserts, webhook records); the slowest legitimate one is
/// a usage report that reads raw ledger rows (a range that is not whole
/// UTC days) over a large ledger, which this leaves minutes for.
/// Migrations run without it (see [`migrate`]).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// PostgreSQL's SQLSTATE for a unique constraint violation.
const UNIQUE_VIOLATION: &str = "23505";
/// PostgreSQL's SQLSTATE for a foreign key violation.
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// A small pool to the database at `url`, each statement on it bounded by
/// [`STATEMENT_TIMEOUT`].
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    connect_with(url, Some(STATEMENT_TIMEOUT)).await
}

/// A small pool to the database at `url` with another statement timeout
/// (`None`: unbounded, for a bulk load run by hand).
pub async fn connect_with(
    url: &str,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Postgres(sqlx::Error::Configuration(
            "the database URL must start with postgres:// or postgresql://".into(),
        )));
    }
    let timeout_ms = statement_timeout.map_or(0, |t| t.as_millis());
    let options = PgConnectOptions::from_str(url)?
        .options([("statement_timeout", format!("{timeout_ms}ms"))]);
    // No ping before each use: it doubled the round trips of every ledger
    // write. A connection PostgreSQL dropped fails its next query instead,
    // and the callers retry store errors (the worker) or answer 503 (the API).
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Applies any migrations the database lacks, on a connection of their
/// own without the pool's statement timeout: a migration that rewrites a
/// large table may take longer, and `sluice migrate` runs alone.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    let migrated = MIGRATOR.run(&mut conn).await;
    // Closing is a courtesy to the server; the migration's result is what counts.
    let _ = conn.close().await;
    migrated?;
    Ok(())
}

/// Fails with [`StoreError::Unmigrated`] unless every migration this build
/// knows has been applied.
pub async fn check_migrated(pool: &PgPool) -> Result<(), StoreError> {
    let have_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: HashSet<i64> = if have_table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{:04}_{}", m.version, m.description.replace(' ', "_")))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Unmigrated(format!(
            "database is not migrated: run `sluice migrate` (missing: {})",
            missing.join(", ")
        )))
    }
}

/// Whether `err` is PostgreSQL refusing a row with SQLSTATE `code`.
fn is_db_code(err: &sqlx::Error, code: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().as_deref() == Some(code),
        _ => false,
    }
}

/// The [`TenantStore`] on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgTenantStore {
    pool: PgPool,
}

impl PgTenantStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `update`, an UPDATE of the key `key_id` alone; a key that is
    /// not there is `NotFound`.
    async fn update_key(
        &self,
        key_id: &str,
        update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), StoreError> {
        if update.execute(&self.pool).await?.rows_affected() == 0 {
            return Err(key_not_found(key_id));
        }
        Ok(())
    }
}

/// A `u32` setting as an `integer` column holds it (the largest fits
/// any weight or cap that means something).
fn as_int4(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// `NotFound` when an update by tenant name touched no row.
fn tenant_updated(updated: &sqlx::postgres::PgQueryResult, tenant: &str) -> Result<(), StoreError> {
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("no tenant named {tenant:?}")));
    }
    Ok(())
}

fn key_not_found(key_id: &str) -> StoreError {
    StoreError::NotFound(format!("no key with id {key_id:?}"))
}

/// A key's id as the database keeps it; a malformed one names no key.
fn key_uuid(key_id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(key_id).map_err(|_| key_not_found(key_id))
}

#[async_trait]
impl TenantStore for PgTenantStore {
    async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let id = Uuid::now_v7();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at",
        )
        .bind(id)
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| {
            if is_db_code(&err, UNIQUE_VIOLATION) {
                StoreError::Conflict(format!("tenant {name:?} already exists"))
            } else {
                StoreError::Postgres(err)
            }
        })?;
        Ok(Tenant {
            id: id.to_string(),
            name: name.to_owned(),
            created_at,
        })
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row: Option<(Uuid, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id, name, created_at)| Tenant {
            id: id.to_string(),
            name,
            created_at,
        }))
    }

    async fn create_key(&self, tenant: &str, key_name: &str) -> Result<NewKey, StoreError> {
        let id = Uuid::now_v7();
        let key = generate_key();
        let shown = display_prefix(&key);
        let not_found = || StoreError::NotFound(format!("no such tenant: {tenant:?}"));
        // One statement: the tenant lookup and the insert cannot race.
        let row: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, display_prefix) \
             SELECT $1, t.id, $2, $3, $4 FROM tenants t WHERE t.name = $5 \
             RETURNING tenant_id, created_at",
        )
        .bind(id)
        .bind(key_name)
        .bind(hash_key(&key))
        .bind(&shown)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            if is_db_code(&err, FOREIGN_KEY_VIOLATION) {
                not_found()
            } else if is_db_code(&err, UNIQUE_VIOLATION) {
                StoreError::Conflict("key hash collision".to_owned())
            } else {
                StoreError::Postgres(err)
            }
        })?;
        let (tenant_id, created_at) = row.ok_or_else(not_found)?;
        Ok(NewKey {
            key,
            record: ApiKey {
                id: id.to_string(),
                tenant_id: tenant_id.to_string(),
                name: key_name.to_owned(),
                display_prefix: shown,
                created_at,
            },
        })
    }

    async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, StoreError> {
        if !looks_like_key(presented) {
            return Ok(None);
        }
        // One round trip: find a live key and, at most once a minute,
        // record its use (the data-modifying CTE runs even though the
        // final SELECT does not read it).
        type Row = (
            Uuid,
            Uuid,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<i32>,
            Option<i32>,
        );
        let row: Option<Row> = sqlx::query_as(
            "WITH k AS ( \
                 SELECT k.id, k.tenant_id, t.name AS tenant_name, k.last_used_at, \
                        t.requests_per_minute, t.tokens_per_minute, t.monthly_budget_micros, \
                        k.monthly_budget_micros AS key_budget, k.default_priority, \
                        t.fair_weight, k.max_inflight \
                 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                 WHERE k.key_hash = $1 \
                   AND k.revoked_at IS NULL \
                   AND (k.expires_at IS NULL OR k.expires_at > now()) \
             ), touched AS ( \
                 UPDATE api_keys SET last_used_at = now() \
                 FROM k \
                 WHERE api_keys.id = k.id \
                   AND (k.last_used_at IS NULL \
                        OR k.last_used_at < now() - interval '1 minute') \
             ) \
             SELECT id, tenant_id, tenant_name, requests_per_minute, tokens_per_minute, \
                    monthly_budget_micros, key_budget, default_priority, fair_weight, max_inflight \
             FROM k",
        )
        .bind(hash_key(presented))
        .fetch_optional(&self.pool)
        .await?;
        let limit = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        let positive = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        let Some((
            key_id,
            tenant_id,
            tenant_name,
            rpm,
            tpm,
            budget,
            key_budget,
            priority,
            weight,
            max_inflight,
        )) = row
        else {
            return Ok(None);
        };
        let default_priority = priority
            .map(|p| serde_json::from_value(serde_json::Value::String(p)))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("key {key_id} default_priority: {e}")))?;
        Ok(Some(Principal {
            tenant_id: tenant_id.to_string(),
            tenant_name,
            key_id: key_id.to_string(),
            requests_per_minute: limit(rpm),
            tokens_per_minute: limit(tpm),
            monthly_budget_micros: limit(budget),
            key_monthly_budget_micros: limit(key_budget),
            default_priority,
            weight: positive(weight),
            key_max_inflight: positive(max_inflight),
        }))
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), StoreError> {
        let update = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1",
        )
        .bind(key_uuid(key_id)?);
        self.update_key(key_id, update).await
    }

    async fn set_key_budget(
        &self,
        key_id: &str,
        monthly_micros: Option<u64>,
    ) -> Result<(), StoreError> {
        let update = sqlx::query("UPDATE api_keys SET monthly_budget_micros = $2 WHERE id = $1")
            .bind(key_uuid(key_id)?)
            .bind(monthly_micros.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
        self.update_key(key_id, update).await
    }

    async fn set_key_priority(
        &self,
        key_id: &str,
        priority: Option<sluice_core::Priority>,
    ) -> Result<(), StoreError> {
        let update = sqlx::query("UPDATE api_keys SET default_priority = $2 WHERE id = $1")
            .bind(key_uuid(key_id)?)
            .bind(priority.map(|p| p.as_str()));
        self.update_key(key_id, update).await
    }

    async fn set_key_max_inflight(
        &self,
        key_id: &str,
        max_inflight: Option<u32>,
    ) -> Result<(), StoreError> {
        let update = sqlx::query("UPDATE api_keys SET max_inflight = $2 WHERE id = $1")
            .bind(key_uuid(key_id)?)
            .bind(max_inflight.map(as_int4));
        self.update_key(key_id, update).await
    }

    async fn set_key_expiry(
        &self,
        key_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let update = sqlx::query("UPDATE api_keys SET expires_at = $2 WHERE id = $1")
            .bind(key_uuid(key_id)?)
            .bind(expires_at);
        self.update_key(key_id, update).await
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<(ApiKey, bool)>, StoreError> {
        if self.tenant_by_name(tenant).await?.is_none() {
            return Err(StoreError::NotFound(format!("no tenant named {tenant:?}")));
        }
        type Row = (Uuid, Uuid, String, String, DateTime<Utc>, bool);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT k.id, k.tenant_id, k.name, k.display_prefix, k.created_at, k.revoked_at IS NOT NULL \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE t.name = $1 ORDER BY k.id DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, tenant_id, name, display_prefix, created_at, revoked)| {
                    let key = ApiKey {
                        id: id.to_string(),
                        tenant_id: tenant_id.to_string(),
                        name,
                        display_prefix,
                        created_at,
                    };
                    (key, revoked)
                },
            )
            .collect())
    }

    async fn set_budget(
        &self,
        tenant: &str,
        monthly_micros: Option<u64>,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE tenants SET monthly_budget_micros = $2 WHERE name = $1")
            .bind(tenant)
            .bind(monthly_micros.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
            .execute(&self.pool)
            .await?;
        tenant_updated(&updated, tenant)
    }

    async fn set_limits(
        &self,
        tenant: &str,
        requests_per_minute: Option<u64>,
        tokens_per_minute: Option<u64>,
    ) -> Result<(), StoreError> {
        let as_i64 = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let updated = sqlx::query(
            "UPDATE tenants SET requests_per_minute = $2, tokens_per_minute = $3 WHERE name = $1",
        )
        .bind(tenant)
        .bind(as_i64(requests_per_minute))
        .bind(as_i64(tokens_per_minute))
        .execute(&self.pool)
        .await?;
        tenant_updated(&updated, tenant)
    }

    async fn set_batch_queue_tokens(
        &self,
        tenant: &str,
        tokens: Option<u64>,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE tenants SET batch_queue_tokens = $2 WHERE name = $1")
            .bind(tenant)
            .bind(tokens.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
            .execute(&self.pool)
            .await?;
        tenant_updated(&updated, tenant)
    }

    async fn batch_queue_tokens(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        let tokens: Option<Option<i64>> =
            sqlx::query_scalar("SELECT batch_queue_tokens FROM tenants WHERE id = $1")
                .bind(crate::usage::uuid(tenant_id, "tenant id")?)
                .fetch_optional(&self.pool)
                .await?;
        Ok(tokens.flatten().and_then(|n| u64::try_from(n).ok()))
    }

    async fn set_tenant_weight(&self, tenant: &str, weight: Option<u32>) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE tenants SET fair_weight = $2 WHERE name = $1")
            .bind(tenant)
            .bind(weight.map(as_int4))
            .execute(&self.pool)
            .await?;
        tenant_updated(&updated, tenant)
    }

    async fn tenant_weight(&self, tenant_id: &str) -> Result<Option<u32>, StoreError> {
        let weight: Option<Option<i32>> =
            sqlx::query_scalar("SELECT fair_weight FROM tenants WHERE id = $1")
                .bind(crate::usage::uuid(tenant_id, "tenant id")?)
                .fetch_optional(&self.pool)
                .await?;
        Ok(weight.flatten().and_then(|n| u32::try_from(n).ok()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
