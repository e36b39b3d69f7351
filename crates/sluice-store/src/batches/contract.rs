//! The behaviour every batch store must have, written once and run against
//! both: [`MemoryBatchStore`] in this crate's unit tests, and
//! [`PgBatchStore`] in `tests/batches_pg.rs` (a fresh migrated database per
//! scenario). [`batch_contract_tests!`](crate::batch_contract_tests) makes
//! one test of each scenario for a store.

// Test support: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

/// One `#[tokio::test]` per scenario, each on the store that `$fresh()`
/// makes, with two tenants: `(guard, store, [tenant_a, tenant_b])`.
#[macro_export]
macro_rules! batch_contract_tests {
    ($fresh:path) => {
        $crate::batch_contract_tests!(
            $fresh;
            a_batch_runs_from_validating_to_completed,
            a_lease_keeps_other_drivers_out_until_it_runs_out,
            a_cancel_stops_a_moving_batch_only,
            batches_are_their_tenants_and_list_newest_first,
            a_failed_validation_keeps_its_errors,
            a_resumed_expansion_replaces_jobs_and_tokens_count_per_tenant,
        );
    };
    ($fresh:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (_keep, store, tenants) = $fresh().await;
                $crate::batches::contract::$scenario(&store, &tenants).await;
            }
        )+
    };
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

async fn new_batch(store: &dyn BatchStore, tenant: &str) -> Batch {
    let batch = Batch::new(NewBatch {
        tenant_id: tenant.to_owned(),
        tenant_name: "a".into(),
        key_id: "key".into(),
        input_file_id: "file-1".into(),
        endpoint: "/v1/chat/completions".into(),
        completion_window: "24h".into(),
        metadata: Some(serde_json::json!({"team": "x"})),
        created_at: t0(),
        expires_at: t0() + Duration::hours(24),
    });
    store.create(&batch).await.unwrap();
    batch
}

fn lines(n: u64) -> Vec<BatchLine> {
    (0..n)
        .map(|line| BatchLine {
            line,
            custom_id: format!("req-{line}"),
            job_id: JobId::new(),
            state: LineState::Open,
        })
        .collect()
}

fn all(limit: usize) -> LinePage {
    LinePage {
        after: None,
        limit,
        open_only: false,
    }
}

pub async fn a_batch_runs_from_validating_to_completed(store: &dyn BatchStore, t: &[String; 2]) {
    let b = new_batch(store, &t[0]).await;
    let claimed = store.claim("w1", LEASE, t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0], b);
    let input = lines(7);
    assert!(store.begin(&b.id, "w1", &input, 700, t0()).await.unwrap());
    // Once begun, a second begin is refused: the lines are written once.
    assert!(!store.begin(&b.id, "w1", &input, 700, t0()).await.unwrap());
    let got = store.get(&t[0], &b.id).await.unwrap().unwrap();
    assert_eq!(got.status, BatchStatus::InProgress);
    assert_eq!(
        (got.total, got.tokens, got.in_progress_at),
        (7, 700, Some(t0()))
    );
    assert_eq!(store.lines(&b.id, all(100)).await.unwrap(), input);
    let page = LinePage {
        after: Some(2),
        limit: 3,
        open_only: false,
    };
    assert_eq!(
        store.lines(&b.id, page).await.unwrap(),
        input[3..6].to_vec()
    );

    let ends = [
        (0, LineState::Succeeded),
        (1, LineState::Failed),
        (2, LineState::Succeeded),
        (3, LineState::Expired),
    ];
    assert!(store.settle(&b.id, "w1", &ends).await.unwrap());
    // Settling again counts nothing twice.
    assert!(store.settle(&b.id, "w1", &ends).await.unwrap());
    let got = store.get(&t[0], &b.id).await.unwrap().unwrap();
    assert_eq!((got.completed, got.failed), (2, 1));
    let open = LinePage {
        after: None,
        limit: 100,
        open_only: true,
    };
    let open: Vec<u64> = store
        .lines(&b.id, open)
        .await
        .unwrap()
        .iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(open, [4, 5, 6]);

    let at = t0() + Duration::minutes(5);
    assert!(store.finalize(&b.id, "w1", false, at).await.unwrap());
    assert!(store
        .finish(&b.id, "w1", Some("file-out"), None, at)
        .await
        .unwrap());
    let got = store.get(&t[0], &b.id).await.unwrap().unwrap();
    assert_eq!(got.status, BatchStatus::Completed);
    assert_eq!((got.finalizing_at, got.completed_at), (Some(at), Some(at)));
    assert_eq!(got.output_file_id.as_deref(), Some("file-out"));
    assert_eq!(got.error_file_id, None);
    // An ended batch is no driver's work.
    assert!(store.claim("w1", LEASE, at, 10).await.unwrap().is_empty());
}

pub async fn a_lease_keeps_other_drivers_out_until_it_runs_out(
    store: &dyn BatchStore,
    t: &[String; 2],
) {
    let b = new_batch(store, &t[0]).await;
    assert_eq!(store.claim("w1", LEASE, t0(), 10).await.unwrap().len(), 1);
    assert!(store.claim("w2", LEASE, t0(), 10).await.unwrap().is_empty());
    // Its holder renews it.
    assert_eq!(store.claim("w1", LEASE, t0(), 10).await.unwrap().len(), 1);
    let later = t0() + Duration::seconds(61);
    assert_eq!(store.claim("w2", LEASE, later, 10).await.unwrap().len(), 1);
    // The old holder's writes now change nothing.
    assert!(!store.begin(&b.id, "w1", &lines(2), 2, later).await.unwrap());
    assert!(!store.fail(&b.id, "w1", &[], later).await.unwrap());
    assert_eq!(
        store.get(&t[0], &b.id).await.unwrap().unwrap().status,
        BatchStatus::Validating
    );
    store.release("w2").await.unwrap();
    assert_eq!(store.claim("w3", LEASE, later, 10).await.unwrap().len(), 1);
}

pub async fn a_cancel_stops_a_moving_batch_only(store: &dyn BatchStore, t: &[String; 2]) {
    let validating = new_batch(store, &t[0]).await;
    let at = t0() + Duration::seconds(3);
    let got = store
        .cancel(&t[0], &validating.id, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, BatchStatus::Cancelling);
    assert_eq!(got.cancelling_at, Some(at));
    assert!(store
        .cancel(&t[1], &validating.id, at)
        .await
        .unwrap()
        .is_none());

    let running = new_batch(store, &t[0]).await;
    store.claim("w1", LEASE, t0(), 10).await.unwrap();
    assert!(store
        .begin(&running.id, "w1", &lines(2), 2, t0())
        .await
        .unwrap());
    assert_eq!(
        store
            .cancel(&t[0], &running.id, at)
            .await
            .unwrap()
            .unwrap()
            .status,
        BatchStatus::Cancelling
    );
    // A cancelling batch is still claimed (to cancel its lines), and ends
    // cancelled, with the files of what finished.
    assert_eq!(store.claim("w1", LEASE, at, 10).await.unwrap().len(), 2);
    assert!(store
        .finish(&running.id, "w1", Some("out"), Some("err"), at)
        .await
        .unwrap());
    let got = store.get(&t[0], &running.id).await.unwrap().unwrap();
    assert_eq!(got.status, BatchStatus::Cancelled);
    assert_eq!(got.cancelled_at, Some(at));
    assert_eq!(got.error_file_id.as_deref(), Some("err"));
    // An ended batch stays as it ended.
    let got = store.cancel(&t[0], &running.id, at).await.unwrap().unwrap();
    assert_eq!(got.status, BatchStatus::Cancelled);
}

pub async fn batches_are_their_tenants_and_list_newest_first(
    store: &dyn BatchStore,
    t: &[String; 2],
) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(new_batch(store, &t[0]).await.id);
    }
    let other = new_batch(store, &t[1]).await;
    assert!(store.get(&t[0], &other.id).await.unwrap().is_none());
    let listed: Vec<String> = store
        .list(&t[0], None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let page: Vec<String> = store
        .list(&t[0], Some(&ids[2]), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(page, [ids[1].clone()]);
}

pub async fn a_failed_validation_keeps_its_errors(store: &dyn BatchStore, t: &[String; 2]) {
    let b = new_batch(store, &t[0]).await;
    store.claim("w1", LEASE, t0(), 10).await.unwrap();
    let errors = vec![LineError {
        code: "duplicate_custom_id".into(),
        message: "the custom_id \"a\" is used on line 1 too".into(),
        line: Some(3),
        param: Some("custom_id".into()),
    }];
    assert!(store.fail(&b.id, "w1", &errors, t0()).await.unwrap());
    let got = store.get(&t[0], &b.id).await.unwrap().unwrap();
    assert_eq!(got.status, BatchStatus::Failed);
    assert_eq!(got.errors, errors);
    assert_eq!(got.failed_at, Some(t0()));
    assert!(store.claim("w1", LEASE, t0(), 10).await.unwrap().is_empty());
}

pub async fn a_resumed_expansion_replaces_jobs_and_tokens_count_per_tenant(
    store: &dyn BatchStore,
    t: &[String; 2],
) {
    let a = new_batch(store, &t[0]).await;
    let b = new_batch(store, &t[0]).await;
    let c = new_batch(store, &t[1]).await;
    store.claim("w1", LEASE, t0(), 10).await.unwrap();
    let input = lines(4);
    assert!(store.begin(&a.id, "w1", &input, 100, t0()).await.unwrap());
    assert!(store.begin(&b.id, "w1", &lines(1), 20, t0()).await.unwrap());
    assert!(store.begin(&c.id, "w1", &lines(1), 5, t0()).await.unwrap());
    assert_eq!(store.queued_tokens(&t[0], &b.id).await.unwrap(), 100);
    assert_eq!(store.queued_tokens(&t[0], "none").await.unwrap(), 120);

    let fresh = JobId::new();
    assert!(store.expanded(&a.id, "w1", 3, &[(2, fresh)]).await.unwrap());
    assert!(store.expanded(&a.id, "w1", 2, &[]).await.unwrap());
    assert_eq!(store.get(&t[0], &a.id).await.unwrap().unwrap().expanded, 3);
    let got = store.lines(&a.id, all(10)).await.unwrap();
    assert_eq!(got[2].job_id, fresh);
    assert_eq!(got[1].job_id, input[1].job_id);
    assert!(!store.expanded(&a.id, "w2", 4, &[]).await.unwrap());
}

#[cfg(test)]
mod memory {
    async fn fresh() -> ((), super::MemoryBatchStore, [String; 2]) {
        (
            (),
            super::MemoryBatchStore::default(),
            ["a".into(), "b".into()],
        )
    }

    crate::batch_contract_tests!(fresh);
}
