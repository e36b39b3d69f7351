//! Sluice's stores, each a trait with a real implementation and an
//! in-memory one:
//!
//! - [`jobs`]: job records, their forward-only state changes and the
//!   completion notifications long-polls wait on (Redis through fred).
//! - [`cache`]: the response cache: exact entries, in-flight coalescing,
//!   semantic vectors (Redis).
//! - [`budget`]: fleet-wide provider rate budgets (Redis).
//! - [`tenants`]: tenants and API keys, keys stored hashed (PostgreSQL
//!   through sqlx), and the migrations.

pub mod budget;
pub mod cache;
pub mod jobs;
pub mod tenants;
pub mod usage;
pub mod webhooks;

/// A store that failed to answer. Callers treat it as "unavailable, try
/// later": nothing is acked or confirmed on a store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unmigrated(String),
    /// A write shared with other callers failed (its cause, as text).
    #[error("{0}")]
    Unavailable(String),
}
