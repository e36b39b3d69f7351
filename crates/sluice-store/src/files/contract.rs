//! The behaviour every file store must have, written once and run against
//! both: [`MemoryFileStore`] in this crate's unit tests, and
//! [`PgFileStore`] in `tests/files_pg.rs` (a fresh migrated database per
//! scenario). [`file_contract_tests!`](crate::file_contract_tests) makes
//! one test of each scenario for a store.

// Test support: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::TryStreamExt;

use super::*;

/// One `#[tokio::test]` per scenario, each on the store that `$fresh()`
/// makes, with two tenants: `(guard, store, [tenant_a, tenant_b])`.
#[macro_export]
macro_rules! file_contract_tests {
    ($fresh:path) => {
        $crate::file_contract_tests!(
            $fresh;
            a_file_streams_in_and_reads_back_whole,
            a_file_is_its_tenants_own,
            an_upload_over_its_limits_or_broken_off_leaves_nothing,
            lists_page_by_id_in_either_order_and_by_purpose,
            expired_files_are_gone_and_swept,
        );
    };
    ($fresh:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (_keep, store, tenants) = $fresh().await;
                $crate::files::contract::$scenario(&store, &tenants).await;
            }
        )+
    };
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

const ROOMY: FileLimits = FileLimits {
    max_bytes: 16 * PART_BYTES as u64,
    max_lines: 100_000,
};

fn new_file(tenant: &str, purpose: &str) -> NewFile {
    NewFile {
        id: NewFile::new_id(),
        tenant_id: tenant.to_owned(),
        purpose: purpose.to_owned(),
        filename: "input.jsonl".into(),
        created_at: t0(),
        expires_at: None,
    }
}

/// `content` streamed in pieces of `piece` bytes.
fn pieces(content: &[u8], piece: usize) -> BoxStream<'static, Result<Bytes, String>> {
    let owned: Vec<Result<Bytes, String>> = content
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(owned).boxed()
}

async fn put(store: &dyn FileStore, tenant: &str, content: &[u8]) -> FileMeta {
    store
        .put(new_file(tenant, "batch"), ROOMY, pieces(content, 64 * 1024))
        .await
        .unwrap()
}

async fn content(store: &dyn FileStore, tenant: &str, id: &str) -> Option<(Vec<u8>, usize)> {
    let parts: Vec<Bytes> = store
        .read(tenant, id, t0())
        .await
        .unwrap()?
        .try_collect()
        .await
        .unwrap();
    Some((parts.concat(), parts.len()))
}

use futures::StreamExt;

pub async fn a_file_streams_in_and_reads_back_whole(store: &dyn FileStore, t: &[String; 2]) {
    let line = format!(
        "{{\"custom_id\": \"x\", \"pad\": \"{}\"}}\n",
        "y".repeat(200)
    );
    let body: Vec<u8> = line.repeat(12_000).into_bytes();
    let meta = put(store, &t[0], &body).await;
    assert_eq!(meta.bytes, body.len() as u64);
    assert_eq!(meta.lines, 12_000);
    assert!(meta.id.starts_with("file-"));
    assert_eq!(
        store.get(&t[0], &meta.id, t0()).await.unwrap(),
        Some(meta.clone())
    );
    let (read, parts) = content(store, &t[0], &meta.id).await.unwrap();
    assert!(read == body, "the content reads back as written");
    assert_eq!(parts, body.len().div_ceil(PART_BYTES));
    // An empty file is a file too.
    let empty = put(store, &t[0], b"").await;
    assert_eq!((empty.bytes, empty.lines), (0, 0));
    assert_eq!(content(store, &t[0], &empty.id).await.unwrap().0, b"");
}

pub async fn a_file_is_its_tenants_own(store: &dyn FileStore, t: &[String; 2]) {
    let meta = put(store, &t[0], b"{}\n").await;
    let query = FileQuery {
        limit: 10,
        ..FileQuery::default()
    };
    assert_eq!(store.get(&t[1], &meta.id, t0()).await.unwrap(), None);
    assert!(store.read(&t[1], &meta.id, t0()).await.unwrap().is_none());
    assert!(store.list(&t[1], &query, t0()).await.unwrap().is_empty());
    assert!(!store.delete(&t[1], &meta.id).await.unwrap());
    assert_eq!(
        store.list(&t[0], &query, t0()).await.unwrap(),
        vec![meta.clone()]
    );
    assert!(store.delete(&t[0], &meta.id).await.unwrap());
    assert!(!store.delete(&t[0], &meta.id).await.unwrap());
    assert_eq!(store.get(&t[0], &meta.id, t0()).await.unwrap(), None);
    assert!(content(store, &t[0], &meta.id).await.is_none());
}

pub async fn an_upload_over_its_limits_or_broken_off_leaves_nothing(
    store: &dyn FileStore,
    t: &[String; 2],
) {
    let body = "{}\n".repeat(600_000).into_bytes();
    let small = FileLimits {
        max_bytes: u64::MAX,
        max_lines: 500_000,
    };
    let file = new_file(&t[0], "batch");
    let id = file.id.clone();
    let err = store
        .put(file, small, pieces(&body, 100_000))
        .await
        .unwrap_err();
    assert!(matches!(err, PutError::TooLarge(_)), "{err}");
    assert_eq!(store.get(&t[0], &id, t0()).await.unwrap(), None);

    let broken = futures::stream::iter(vec![
        Ok(Bytes::from(vec![b'x'; PART_BYTES + 10])),
        Err("connection reset".to_owned()),
    ])
    .boxed();
    let file = new_file(&t[0], "batch");
    let id = file.id.clone();
    let err = store.put(file, ROOMY, broken).await.unwrap_err();
    assert!(
        matches!(err, PutError::Unreadable(ref m) if m.contains("reset")),
        "{err}"
    );
    assert_eq!(store.get(&t[0], &id, t0()).await.unwrap(), None);
    let all = FileQuery {
        limit: 10,
        ..FileQuery::default()
    };
    assert!(store.list(&t[0], &all, t0()).await.unwrap().is_empty());
}

pub async fn lists_page_by_id_in_either_order_and_by_purpose(
    store: &dyn FileStore,
    t: &[String; 2],
) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 { "fine-tune" } else { "batch" };
        let meta = store
            .put(new_file(&t[0], purpose), ROOMY, pieces(b"{}\n", 8))
            .await
            .unwrap();
        ids.push(meta.id);
    }
    let ids_of = |files: Vec<FileMeta>| files.into_iter().map(|f| f.id).collect::<Vec<_>>();
    let newest = FileQuery {
        limit: 2,
        ..FileQuery::default()
    };
    let page = ids_of(store.list(&t[0], &newest, t0()).await.unwrap());
    assert_eq!(page, vec![ids[4].clone(), ids[3].clone()]);
    let next = FileQuery {
        after: Some(ids[3].clone()),
        limit: 10,
        ..FileQuery::default()
    };
    let rest = ids_of(store.list(&t[0], &next, t0()).await.unwrap());
    assert_eq!(rest, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let oldest = FileQuery {
        after: Some(ids[0].clone()),
        limit: 10,
        oldest_first: true,
        purpose: Some("batch".into()),
    };
    let batch = ids_of(store.list(&t[0], &oldest, t0()).await.unwrap());
    assert_eq!(batch, vec![ids[1].clone(), ids[3].clone(), ids[4].clone()]);
}

pub async fn expired_files_are_gone_and_swept(store: &dyn FileStore, t: &[String; 2]) {
    let mut short = new_file(&t[0], "batch");
    short.expires_at = Some(t0() + Duration::hours(1));
    let short = store.put(short, ROOMY, pieces(b"{}\n", 8)).await.unwrap();
    let kept = put(store, &t[0], b"{}\n").await;
    let later = t0() + Duration::hours(2);
    assert!(store.get(&t[0], &short.id, t0()).await.unwrap().is_some());
    assert_eq!(store.get(&t[0], &short.id, later).await.unwrap(), None);
    assert!(store.read(&t[0], &short.id, later).await.unwrap().is_none());
    assert_eq!(store.delete_expired(t0()).await.unwrap(), 0);
    assert_eq!(store.delete_expired(later).await.unwrap(), 1);
    assert_eq!(store.get(&t[0], &short.id, t0()).await.unwrap(), None);
    assert!(store.get(&t[0], &kept.id, later).await.unwrap().is_some());
}

#[cfg(test)]
mod memory {
    async fn fresh() -> ((), super::MemoryFileStore, [String; 2]) {
        (
            (),
            super::MemoryFileStore::default(),
            ["a".into(), "b".into()],
        )
    }

    crate::file_contract_tests!(fresh);
}
