//! The provider batch store on a real PostgreSQL (a database per test, see
//! `support`): the contract (`sluice_store::provider_batches::contract`),
//! and what only the tables show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sluice_store::provider_batches::contract::{at, limits, line, t0, target};
use sluice_store::provider_batches::{PgProviderBatchStore, ProviderBatchStore};
use sluice_store::StoreError;
use std::time::Duration;
use support::TestDb;

async fn fresh() -> (TestDb, PgProviderBatchStore) {
    let db = TestDb::migrated().await;
    let store = PgProviderBatchStore::new(db.pool.clone());
    (db, store)
}

sluice_store::provider_batch_contract_tests!(fresh);

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn finish_deletes_the_job_rows_and_keeps_the_batch_as_a_record() {
    let (db, store) = fresh().await;
    let lines = [line(10, 3600), line(10, 3600)];
    let made = store
        .append(&target("p", "m"), &lines, limits(2, u64::MAX), t0())
        .await
        .unwrap();
    store
        .claim("a", Duration::from_secs(60), 10, t0())
        .await
        .unwrap();
    store.begin_submit(&made[0], "a").await.unwrap().unwrap();
    assert!(store
        .submitted(&made[0], "a", "remote", at(1))
        .await
        .unwrap());
    assert_eq!(
        count(&db, "SELECT count(*) FROM provider_batch_jobs").await,
        2
    );

    assert!(store.finish(&made[0], "a", at(2)).await.unwrap());
    assert_eq!(
        count(&db, "SELECT count(*) FROM provider_batch_jobs").await,
        0
    );
    let (state, remote, finished, owner): (
        String,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
    ) = sqlx::query_as("SELECT state, remote_id, finished_at, owner FROM provider_batches")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(state, "done");
    assert_eq!(remote.as_deref(), Some("remote"));
    assert_eq!(finished, Some(at(2)));
    assert_eq!(owner, None);
}

#[tokio::test]
async fn a_job_row_that_does_not_decode_is_a_corrupt_record() {
    let (db, store) = fresh().await;
    let made = store
        .append(
            &target("p", "m"),
            &[line(10, 3600)],
            limits(1, u64::MAX),
            t0(),
        )
        .await
        .unwrap();
    sqlx::query("UPDATE provider_batch_jobs SET job = '{\"message\": 1}'")
        .execute(&db.pool)
        .await
        .unwrap();
    let err = store
        .claim("a", Duration::from_secs(60), 10, t0())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(&made[0]), "{err}");
}
