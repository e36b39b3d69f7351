//! The real services a stack runs against, a database of one's own on the
//! PostgreSQL server, and the removal of what a prefix left behind.

use std::time::Duration;

use sluice_core::services::{DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL};
use sqlx::{ConnectOptions, Connection};

/// Where RabbitMQ, Redis and the PostgreSQL server are.
#[derive(Clone, Debug)]
pub struct Services {
    pub amqp_url: String,
    pub redis_url: String,
    /// Any database on the PostgreSQL server: its path is replaced by the
    /// database wanted (`postgres` for creating and dropping others).
    pub postgres_url: String,
}

/// RabbitMQ: `SLUICE_AMQP_URL`, else the local broker.
pub fn amqp_url() -> String {
    std::env::var("SLUICE_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into())
}

/// Redis: `SLUICE_REDIS_URL`, else the local server.
pub fn redis_url() -> String {
    std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into())
}

impl Services {
    /// The tests' services: `SLUICE_AMQP_URL`, `SLUICE_REDIS_URL` and
    /// `SLUICE_TEST_PG_ADMIN_URL`, else the local ones.
    pub fn from_env() -> Self {
        Self {
            amqp_url: amqp_url(),
            redis_url: redis_url(),
            postgres_url: std::env::var("SLUICE_TEST_PG_ADMIN_URL")
                .unwrap_or_else(|_| DEFAULT_DATABASE_URL.into()),
        }
    }

    /// The URL of `database` on the PostgreSQL server.
    pub fn database_url(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.postgres_url)
            .unwrap_or_else(|e| panic!("PostgreSQL URL {:?}: {e}", self.postgres_url));
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// Deletes the queues and exchanges of `prefix` (with these webhook
    /// delay queues) and its Redis keys; says on stderr what it could not.
    pub async fn remove_prefix(&self, prefix: &str, webhook_delays: Vec<u64>) {
        let topology =
            sluice_queue::Topology::new(prefix.to_owned(), 5).with_webhook_delays(webhook_delays);
        if let Err(e) = sluice_queue::amqp::teardown(&self.amqp_url, &topology).await {
            eprintln!("cleanup: queues of {prefix}: {e}");
        }
        let options = sluice_store::jobs::RedisOptions {
            url: self.redis_url.clone(),
            prefix: prefix.to_owned(),
            retention: Duration::from_secs(60),
            pool_size: 1,
        };
        match sluice_store::jobs::RedisJobStore::connect(options).await {
            Ok(store) => {
                if let Err(e) = store.delete_all().await {
                    eprintln!("cleanup: redis keys of {prefix}: {e}");
                }
                store.close().await;
            }
            Err(e) => eprintln!("cleanup: redis keys of {prefix}: {e}"),
        }
    }
}

/// A database of one's own on the PostgreSQL server, empty when made and
/// dropped (with its connections) when this is dropped.
pub struct Database {
    pub name: String,
    pub url: String,
    admin_url: String,
}

/// A connection to the server's `postgres` database, to create and drop
/// others (quietly: dropping a database in use takes seconds, which sqlx
/// would log as a slow statement).
async fn admin(admin_url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    admin_url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .disable_statement_logging()
        .connect()
        .await
}

impl Database {
    /// Creates the database `name`.
    pub async fn create(services: &Services, name: &str) -> Database {
        let admin_url = services.database_url("postgres");
        let mut admin = admin(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        Database {
            name: name.to_owned(),
            url: services.database_url(name),
            admin_url,
        }
    }

    /// A pool on the database with Sluice's migrations applied.
    pub async fn migrated(&self) -> sqlx::PgPool {
        // Unbounded statements: a benchmark fills its tables in bulk.
        let pool = sluice_store::tenants::connect_with(&self.url, None)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name));
        sluice_store::tenants::migrate(&pool)
            .await
            .unwrap_or_else(|e| panic!("cannot migrate {}: {e}", self.name));
        pool
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        crate::block_on_own_thread(async move {
            let Ok(mut admin) = admin(&admin_url).await else {
                eprintln!("cleanup: cannot reach PostgreSQL to drop {name}");
                return;
            };
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
                eprintln!("cleanup: database {name}: {e}");
            }
        });
    }
}
