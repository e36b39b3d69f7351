//! A scratch PostgreSQL database per test.
//!
//! Each test makes its own database `sluice_test_<random hex>` on the
//! server at `SLUICE_TEST_PG_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432`), migrated or not, and drops it
//! when done, even if the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use rand::Rng;
use sluice_store::tenants::{connect, migrate};
use sqlx::{Connection, Executor, PgConnection, PgPool};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432";

pub fn admin_url() -> String {
    std::env::var("SLUICE_TEST_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` pointing at database `db` instead of whatever it named.
pub fn url_for_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A scratch database, dropped on drop.
pub struct TestDb {
    name: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("sluice_test_{:016x}", rand::thread_rng().gen::<u64>());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to the admin database (is PostgreSQL running?)");
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        let pool = connect(&url_for_db(&admin_url(), &name)).await.unwrap();
        Self { name, pool }
    }

    pub async fn migrated() -> Self {
        let db = Self::new().await;
        migrate(&db.pool).await.unwrap();
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Drop cannot await, and the test's runtime (which drives the
        // pool's sockets) is blocked right here: do the cleanup on a
        // thread of its own, with a runtime and a connection of its own,
        // and leave the pool alone (awaiting `pool.close()` here would
        // deadlock). FORCE ends the pool's sessions; the pool itself is
        // dropped right after this, without needing its runtime.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await?;
                admin.close().await
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop test database: {err}"),
            Err(_) => eprintln!("could not drop test database: cleanup panicked"),
        }
    }
}
