//! The in-memory tenant store's own tests.

use super::*;
use crate::tenants::KEY_PREFIX;
use chrono::Duration;

#[tokio::test]
async fn create_and_find_tenant() {
    let store = MemoryTenantStore::new();
    let t = store.create_tenant("acme").await.unwrap();
    assert_eq!(t.name, "acme");
    assert!(Uuid::parse_str(&t.id).is_ok());
    assert_eq!(store.tenant_by_name("acme").await.unwrap(), Some(t));
    assert_eq!(store.tenant_by_name("nope").await.unwrap(), None);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn duplicate_tenant_conflicts() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let err = store.create_tenant("acme").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

#[tokio::test]
async fn tenant_ids_sort_by_creation() {
    let store = MemoryTenantStore::new();
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    assert!(a.id < b.id);
}

#[tokio::test]
async fn key_for_unknown_tenant_is_not_found() {
    let store = MemoryTenantStore::new();
    let err = store.create_key("ghost", "k").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn key_authenticates_as_its_tenant() {
    let store = MemoryTenantStore::new();
    let t = store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    assert!(new.key.starts_with(KEY_PREFIX));
    assert_eq!(new.record.tenant_id, t.id);
    assert_eq!(new.record.name, "ci");
    assert_eq!(new.record.display_prefix, &new.key[..14]);
    assert_eq!(store.key_last_used_at(&new.record.id).unwrap(), None);

    let p = store.authenticate(&new.key).await.unwrap().unwrap();
    assert_eq!(
        p,
        Principal::with_defaults(t.id, "acme".into(), new.record.id.clone())
    );
    assert!(store.key_last_used_at(&new.record.id).unwrap().is_some());
}

#[tokio::test]
async fn a_tenants_weight_and_a_keys_cap_come_with_the_key() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let capped = store.create_key("acme", "capped").await.unwrap();
    let other = store.create_key("acme", "other").await.unwrap();
    store.set_tenant_weight("acme", Some(3)).await.unwrap();
    store
        .set_key_max_inflight(&capped.record.id, Some(100))
        .await
        .unwrap();
    let share = |key: &str| {
        let key = key.to_owned();
        let store = &store;
        async move { store.authenticate(&key).await.unwrap().unwrap().share() }
    };
    let both = sluice_core::fair::Share {
        weight: Some(3),
        key_max_inflight: Some(100),
    };
    assert_eq!(share(&capped.key).await, both);
    // The weight is the tenant's, the cap the key's alone.
    assert_eq!(
        share(&other.key).await,
        sluice_core::fair::Share {
            weight: Some(3),
            key_max_inflight: None
        }
    );
    store.set_tenant_weight("acme", None).await.unwrap();
    store
        .set_key_max_inflight(&capped.record.id, None)
        .await
        .unwrap();
    assert!(share(&capped.key).await.is_default());
    assert!(matches!(
        store.set_tenant_weight("nobody", Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_key_max_inflight("nope", Some(2)).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn plaintext_is_not_kept() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    let dump = format!("{store:?}");
    assert!(!dump.contains(&new.key));
    assert!(dump.contains(&hash_key(&new.key)));
}

#[tokio::test]
async fn unknown_and_malformed_keys_are_refused() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    assert_eq!(store.authenticate(&generate_key()).await.unwrap(), None);
    assert_eq!(store.authenticate("").await.unwrap(), None);
    assert_eq!(store.authenticate(&new.key[..20]).await.unwrap(), None);
    assert_eq!(
        store.authenticate(&format!("{}x", new.key)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    store.revoke_key(&new.record.id).unwrap();
    assert_eq!(store.authenticate(&new.key).await.unwrap(), None);
    assert!(matches!(
        store.revoke_key("nope"),
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn expired_key_is_refused() {
    let store = MemoryTenantStore::new();
    store.create_tenant("acme").await.unwrap();
    let new = store.create_key("acme", "ci").await.unwrap();
    let id = &new.record.id;

    store
        .set_key_expiry(id, Some(Utc::now() + Duration::hours(1)))
        .unwrap();
    assert!(store.authenticate(&new.key).await.unwrap().is_some());

    store
        .set_key_expiry(id, Some(Utc::now() - Duration::seconds(1)))
        .unwrap();
    assert_eq!(store.authenticate(&new.key).await.unwrap(), None);

    store.set_key_expiry(id, None).unwrap();
    assert!(store.authenticate(&new.key).await.unwrap().is_some());
}

#[tokio::test]
async fn keys_of_different_tenants_stay_apart() {
    let store = MemoryTenantStore::new();
    store.create_tenant("a").await.unwrap();
    store.create_tenant("b").await.unwrap();
    let ka = store.create_key("a", "k").await.unwrap();
    let kb = store.create_key("b", "k").await.unwrap();
    assert_ne!(ka.key, kb.key);
    let pa = store.authenticate(&ka.key).await.unwrap().unwrap();
    let pb = store.authenticate(&kb.key).await.unwrap().unwrap();
    assert_eq!(pa.tenant_name, "a");
    assert_eq!(pb.tenant_name, "b");
}
