//! The batch store on a real PostgreSQL (a database per test, see
//! `support`): the contract (`sluice_store::batches::contract`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sluice_store::batches::PgBatchStore;
use sluice_store::tenants::{PgTenantStore, TenantStore};
use support::TestDb;

async fn fresh() -> (TestDb, PgBatchStore, [String; 2]) {
    let db = TestDb::migrated().await;
    let tenants = PgTenantStore::new(db.pool.clone());
    let a = tenants.create_tenant("a").await.unwrap().id;
    let b = tenants.create_tenant("b").await.unwrap().id;
    let store = PgBatchStore::new(db.pool.clone());
    (db, store, [a, b])
}

sluice_store::batch_contract_tests!(fresh);
