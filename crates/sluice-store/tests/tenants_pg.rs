//! The PostgreSQL tenant store against a real server.
//!
//! Each test makes its own database `sluice_test_<random hex>` on the
//! server at `SLUICE_TEST_PG_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432`), and drops it when done, even if
//! the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sluice_store::tenants::{
    check_migrated, generate_key, hash_key, migrate, PgTenantStore, TenantStore, KEY_PREFIX,
};
use sluice_store::StoreError;
use sqlx::Row;

use support::{url_for_db, TestDb};

/// The tenant store on a test database.
trait Tenants {
    fn store(&self) -> PgTenantStore;
    async fn keys_stored(&self) -> i64;
}

impl Tenants for TestDb {
    fn store(&self) -> PgTenantStore {
        PgTenantStore::new(self.pool.clone())
    }

    async fn keys_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[test]
fn url_for_db_replaces_the_database() {
    assert_eq!(
        url_for_db("postgres://postgres@127.0.0.1:5432", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        url_for_db("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
}

#[tokio::test]
async fn key_is_stored_hashed() {
    let db = TestDb::migrated().await;
    let store = db.store();
    let tenant = store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();

    assert!(new.key.starts_with(KEY_PREFIX));
    assert_eq!(new.record.tenant_id, tenant.id);
    assert_eq!(new.record.name, "ci");
    assert_eq!(new.record.display_prefix, &new.key[..14]);

    let row = sqlx::query(
        "SELECT id::text, tenant_id::text, name, key_hash, display_prefix, \
                created_at::text, last_used_at::text, expires_at::text, revoked_at::text \
         FROM api_keys",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.len(), 1);
    let row = &row[0];
    let key_hash: String = row.get("key_hash");
    assert_eq!(key_hash, hash_key(&new.key));
    assert_eq!(
        row.get::<String, _>("display_prefix"),
        new.record.display_prefix
    );
    assert_eq!(row.get::<String, _>("id"), new.record.id);

    // The plaintext (or its secret part) is in no column.
    let secret = &new.key[KEY_PREFIX.len()..];
    for i in 0..row.len() {
        let value: Option<String> = row.get(i);
        if let Some(value) = value {
            assert!(!value.contains(&new.key), "column {i} holds the key");
            assert!(!value.contains(secret), "column {i} holds the key's secret");
        }
    }
}

#[tokio::test]
async fn authenticate_known_and_unknown_keys() {
    let db = TestDb::migrated().await;
    let store = db.store();
    let tenant = store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();

    let last_used = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_used_at FROM api_keys",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!(last_used().await, None);

    let p = store.authenticate(&new.key).await.unwrap().unwrap();
    assert_eq!(p.tenant_id, tenant.id);
    assert_eq!(p.tenant_name, "acme");
    assert_eq!(p.key_id, new.record.id);
    let first_use = last_used().await.expect("last_used_at recorded");

    // A second use within the minute does not write again.
    assert!(store.authenticate(&new.key).await.unwrap().is_some());
    assert_eq!(last_used().await, Some(first_use));

    assert_eq!(store.authenticate(&generate_key()).await.unwrap(), None);
    assert_eq!(store.authenticate("").await.unwrap(), None);
    assert_eq!(store.authenticate("Bearer nonsense").await.unwrap(), None);
    assert_eq!(store.authenticate(&hash_key(&new.key)).await.unwrap(), None);
}

#[tokio::test]
async fn a_key_carries_its_default_priority_class() {
    let db = TestDb::migrated().await;
    let store = db.store();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "pipeline").await.unwrap();
    let class = || async {
        store
            .authenticate(&new.key)
            .await
            .unwrap()
            .unwrap()
            .default_priority
    };
    assert_eq!(class().await, None);
    store
        .set_key_priority(&new.record.id, Some(sluice_core::Priority::Batch))
        .await
        .unwrap();
    assert_eq!(class().await, Some(sluice_core::Priority::Batch));
    store.set_key_priority(&new.record.id, None).await.unwrap();
    assert_eq!(class().await, None);
    let unknown = uuid::Uuid::new_v4().to_string();
    assert!(store.set_key_priority(&unknown, None).await.is_err());
}

#[tokio::test]
async fn a_key_carries_its_tenants_weight_and_its_own_in_flight_cap() {
    use sluice_core::fair::Share;
    let db = TestDb::migrated().await;
    let store = db.store();
    let tenant = store.create_tenant("acme").await.unwrap();
    let capped = store.create_key("acme", "pipeline").await.unwrap();
    let other = store.create_key("acme", "other").await.unwrap();
    let share = |key: String| {
        let store = &store;
        async move { store.authenticate(&key).await.unwrap().unwrap().share() }
    };
    assert!(share(capped.key.clone()).await.is_default());
    store.set_tenant_weight("acme", Some(3)).await.unwrap();
    store
        .set_key_max_inflight(&capped.record.id, Some(100))
        .await
        .unwrap();
    assert_eq!(
        share(capped.key.clone()).await,
        Share {
            weight: Some(3),
            key_max_inflight: Some(100)
        }
    );
    // The weight is the tenant's; the cap is the key's alone.
    assert_eq!(
        share(other.key.clone()).await,
        Share {
            weight: Some(3),
            key_max_inflight: None
        }
    );
    assert_eq!(store.tenant_weight(&tenant.id).await.unwrap(), Some(3));

    store.set_tenant_weight("acme", None).await.unwrap();
    store
        .set_key_max_inflight(&capped.record.id, None)
        .await
        .unwrap();
    assert!(share(capped.key.clone()).await.is_default());
    assert_eq!(store.tenant_weight(&tenant.id).await.unwrap(), None);

    assert!(matches!(
        store.set_tenant_weight("nobody", Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
    let unknown = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        store.set_key_max_inflight(&unknown, Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
    // The schema refuses a weight or a cap of 0 (the CLI never sends one).
    assert!(store.set_tenant_weight("acme", Some(0)).await.is_err());
    assert!(store
        .set_key_max_inflight(&capped.record.id, Some(0))
        .await
        .is_err());
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused() {
    let db = TestDb::migrated().await;
    let store = db.store();
    store.create_tenant("acme").await.unwrap();
    let revoked = store.create_key("acme", "revoked").await.unwrap();
    let expired = store.create_key("acme", "expired").await.unwrap();
    let future = store.create_key("acme", "future").await.unwrap();

    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE name = 'revoked'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'expired'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() + interval '1 hour' WHERE name = 'future'")
        .execute(&db.pool)
        .await
        .unwrap();

    assert_eq!(store.authenticate(&revoked.key).await.unwrap(), None);
    assert_eq!(store.authenticate(&expired.key).await.unwrap(), None);
    assert!(store.authenticate(&future.key).await.unwrap().is_some());
}

#[tokio::test]
async fn duplicate_tenant_conflicts() {
    let db = TestDb::migrated().await;
    let store = db.store();
    let first = store.create_tenant("acme").await.unwrap();
    let err = store.create_tenant("acme").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let found = store.tenant_by_name("acme").await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(found.name, "acme");
    assert_eq!(store.tenant_by_name("other").await.unwrap(), None);

    // Ids are UUIDv7: later tenants sort after earlier ones.
    let second = store.create_tenant("zeta").await.unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&second.id).unwrap().get_version_num(),
        7
    );
    assert!(first.id < second.id);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn key_for_unknown_tenant_is_not_found() {
    let db = TestDb::migrated().await;
    let store = db.store();
    let err = store.create_key("ghost", "k").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(db.keys_stored().await, 0);
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_keys() {
    let db = TestDb::migrated().await;
    let store = db.store();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    sqlx::query("DELETE FROM tenants WHERE name = 'acme'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(store.authenticate(&new.key).await.unwrap(), None);
    assert_eq!(db.keys_stored().await, 0);
}

#[tokio::test]
async fn check_migrated_before_and_after_migrate() {
    let db = TestDb::new().await;

    let err = check_migrated(&db.pool).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unmigrated(_)), "{err:?}");
    assert!(msg.contains("sluice migrate"), "{msg}");
    assert!(msg.contains("0001_tenants"), "{msg}");

    migrate(&db.pool).await.unwrap();
    check_migrated(&db.pool).await.unwrap();
    // Migrating again is a no-op.
    migrate(&db.pool).await.unwrap();
    check_migrated(&db.pool).await.unwrap();

    // A migration record gone missing counts as unmigrated again.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    let msg = check_migrated(&db.pool).await.unwrap_err().to_string();
    assert!(msg.contains("0001_tenants"), "{msg}");
}

#[tokio::test]
async fn statements_are_bounded_and_a_canceled_one_is_transient() {
    let db = TestDb::migrated().await;
    let bound: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let expected = format!(
        "{}min",
        sluice_store::tenants::STATEMENT_TIMEOUT.as_secs() / 60
    );
    assert_eq!(bound, expected);

    // The same cancellation, sooner: PostgreSQL's answer is worth a retry.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = '20ms'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let canceled = sqlx::query("SELECT pg_sleep(2)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(StoreError::Postgres(canceled).is_transient());
}

#[tokio::test]
async fn a_malformed_stored_webhook_secret_is_refused_not_signed_with() {
    use sluice_store::webhooks::{PgWebhookStore, WebhookStore};
    let db = TestDb::migrated().await;
    let tenant = db.store().create_tenant("acme").await.unwrap();
    let hooks = PgWebhookStore::new(db.pool.clone());
    let secret = hooks
        .rotate_tenant_secret(&tenant.id, std::time::Duration::ZERO)
        .await
        .unwrap();
    let pair = hooks.tenant_secrets(&tenant.id).await.unwrap().unwrap();
    assert_eq!(pair.current, secret);

    sqlx::query("UPDATE webhook_secrets SET secret = 'whsec_!!not base64'")
        .execute(&db.pool)
        .await
        .unwrap();
    match hooks.tenant_secrets(&tenant.id).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("base64"), "{why}"),
        other => panic!("a malformed secret was read as {other:?}"),
    }
}

#[tokio::test]
async fn a_tenants_batch_queue_limit_is_set_read_and_cleared() {
    let db = TestDb::migrated().await;
    let store = db.store();
    let tenant = store.create_tenant("queued").await.unwrap();
    assert_eq!(store.batch_queue_tokens(&tenant.id).await.unwrap(), None);
    store
        .set_batch_queue_tokens("queued", Some(90_000))
        .await
        .unwrap();
    assert_eq!(
        store.batch_queue_tokens(&tenant.id).await.unwrap(),
        Some(90_000)
    );
    store.set_batch_queue_tokens("queued", None).await.unwrap();
    assert_eq!(store.batch_queue_tokens(&tenant.id).await.unwrap(), None);
    assert!(matches!(
        store.set_batch_queue_tokens("nobody", Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
}
