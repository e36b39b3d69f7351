//! What a store call can fail with, and whether it is worth another try.

/// A store that failed to answer. Nothing is acked or confirmed on a
/// store error; [`StoreError::is_transient`] says whether trying again
/// soon may help.
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
    /// A value that could not be serialised for the store (never stored
    /// empty instead).
    #[error("cannot encode {0}")]
    Unencodable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unmigrated(String),
    /// The store cannot be reached (the ledger's writer has stopped).
    #[error("{0}")]
    Unavailable(String),
    /// A write shared with other callers (the ledger's group commit)
    /// failed: the one cause, as each of them sees it.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// Whether the store may answer if asked again soon: a connection that
    /// dropped or timed out, a server busy, loading or failing over, a
    /// pool with no free connection, a query canceled by its timeout, a
    /// serialization conflict. A corrupt record, a conflict, a missing row
    /// or an unmigrated database is the same on every try.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Redis(e) => redis_transient(e),
            Self::Postgres(e) => postgres_transient(e),
            Self::Unavailable(_) => true,
            Self::Shared(cause) => cause.is_transient(),
            Self::Migrate(_)
            | Self::Corrupt(_)
            | Self::Unencodable(_)
            | Self::Conflict(_)
            | Self::NotFound(_)
            | Self::Unmigrated(_) => false,
        }
    }
}

/// The replies of a Redis server that is there but cannot serve yet.
const REDIS_BUSY: [&str; 5] = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY"];

fn redis_transient(e: &fred::error::Error) -> bool {
    use fred::error::ErrorKind;
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Cluster
        | ErrorKind::Routing
        | ErrorKind::Sentinel => true,
        ErrorKind::Unknown => REDIS_BUSY.iter().any(|p| e.details().starts_with(p)),
        _ => false,
    }
}

impl StoreError {
    /// A serialisation failure of `what`.
    pub fn unencodable(what: &str, e: &serde_json::Error) -> Self {
        Self::Unencodable(format!("{what}: {e}"))
    }
}

/// SQLSTATE codes worth another try: every connection exception (class
/// 08), serialization failure, deadlock, too many connections, lock not
/// available, a canceled statement (`statement_timeout`) and a server
/// shutting down or starting.
const PG_TRANSIENT: [&str; 8] = [
    "40001", "40P01", "53300", "55P03", "57014", "57P01", "57P02", "57P03",
];

fn postgres_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || PG_TRANSIENT.contains(&code.as_ref())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error as RedisError, ErrorKind};

    #[test]
    fn a_store_that_is_down_or_busy_is_transient_and_bad_data_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        for transient in [
            StoreError::Redis(RedisError::new(ErrorKind::IO, "reset")),
            StoreError::Redis(RedisError::new(ErrorKind::Timeout, "slow")),
            StoreError::Redis(RedisError::new(ErrorKind::Unknown, "LOADING dataset")),
            StoreError::Postgres(sqlx::Error::Io(io)),
            StoreError::Postgres(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable("ledger down".into()),
            StoreError::Shared(std::sync::Arc::new(StoreError::Postgres(
                sqlx::Error::PoolTimedOut,
            ))),
        ] {
            assert!(transient.is_transient(), "{transient}");
        }
        for lasting in [
            StoreError::Redis(RedisError::new(ErrorKind::Unknown, "ERR user_script:1")),
            StoreError::Redis(RedisError::new(ErrorKind::InvalidArgument, "WRONGTYPE")),
            StoreError::Postgres(sqlx::Error::RowNotFound),
            StoreError::Postgres(sqlx::Error::PoolClosed),
            StoreError::Corrupt("bad".into()),
            StoreError::Conflict("taken".into()),
            StoreError::NotFound("gone".into()),
            StoreError::Unmigrated("run sluice migrate".into()),
            StoreError::Shared(std::sync::Arc::new(StoreError::Corrupt("bad".into()))),
        ] {
            assert!(!lasting.is_transient(), "{lasting}");
        }
    }
}
