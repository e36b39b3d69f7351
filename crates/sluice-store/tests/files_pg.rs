//! The file store on a real PostgreSQL (a database per test, see
//! `support`): the contract (`sluice_store::files::contract`), and what
//! only the tables show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sluice_store::files::contract::t0;
use sluice_store::files::{FileLimits, FileStore, NewFile, PgFileStore};
use sluice_store::tenants::{PgTenantStore, TenantStore};
use support::TestDb;

async fn fresh() -> (TestDb, PgFileStore, [String; 2]) {
    let db = TestDb::migrated().await;
    let tenants = PgTenantStore::new(db.pool.clone());
    let a = tenants.create_tenant("a").await.unwrap().id;
    let b = tenants.create_tenant("b").await.unwrap().id;
    let store = PgFileStore::new(db.pool.clone());
    (db, store, [a, b])
}

sluice_store::file_contract_tests!(fresh);

#[tokio::test]
async fn a_refused_upload_leaves_no_row_and_a_deleted_file_no_part() {
    let (db, store, tenants) = fresh().await;
    let count =
        async |sql: &str| -> i64 { sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap() };
    let file = |id: String| NewFile {
        id,
        tenant_id: tenants[0].clone(),
        purpose: "batch".into(),
        filename: "f.jsonl".into(),
        created_at: t0(),
        expires_at: None,
    };
    let tight = FileLimits {
        max_bytes: 3 << 20,
        max_lines: 10,
    };
    let big = futures::stream::iter((0..5).map(|_| Ok(bytes::Bytes::from(vec![b'x'; 1 << 20]))));
    use futures::StreamExt;
    assert!(store
        .put(file(NewFile::new_id()), tight, big.boxed())
        .await
        .is_err());
    assert_eq!(count("SELECT count(*) FROM files").await, 0);
    assert_eq!(count("SELECT count(*) FROM file_parts").await, 0);

    let two_parts =
        futures::stream::iter((0..2).map(|_| Ok(bytes::Bytes::from(vec![b'x'; 1 << 20]))));
    let meta = store
        .put(file(NewFile::new_id()), tight, two_parts.boxed())
        .await
        .unwrap();
    assert_eq!(count("SELECT count(*) FROM file_parts").await, 2);
    assert!(store.delete(&tenants[0], &meta.id).await.unwrap());
    assert_eq!(count("SELECT count(*) FROM file_parts").await, 0);
}
