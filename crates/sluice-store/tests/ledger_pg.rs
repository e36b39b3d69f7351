//! The PostgreSQL usage ledger against a real server (a database per test,
//! see `support`): repeated provider calls are rows of their own, counted
//! once, in reports (by the ledger's rows and by the daily totals alike)
//! and in what a tenant and a key spent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::json;
use sluice_core::job::Outcome;
use sluice_core::ledger::{LedgerRow, Repeat};
use sluice_core::repeat::{orphan_usage, Estimate};
use sluice_core::{Endpoint, JobId, JobMessage, JobStatus, Tier, Usage};
use sluice_store::usage::{GroupBy, PgLedger, UsageLedger, UsageLine, UsageQuery};
use support::TestDb;
use uuid::Uuid;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 17, 12, 0, 0).unwrap()
}

fn message(tenant: &str, key: &str) -> JobMessage {
    let mut m = JobMessage::new(
        JobId::new(),
        tenant,
        Endpoint::ChatCompletions,
        "m",
        json!({"model": "m", "messages": []}),
        at(),
    );
    m.key_id = Some(key.to_owned());
    m
}

fn answered(message: &JobMessage, cost: u64) -> LedgerRow {
    answered_on(message, cost, Tier::Realtime)
}

fn answered_on(message: &JobMessage, cost: u64, tier: Tier) -> LedgerRow {
    let outcome = Outcome::Succeeded {
        result: json!({}),
        usage: Usage::new(100, 20, 0),
        provider: "p".into(),
        cost_micros: Some(cost),
        tier,
    };
    LedgerRow::for_job(message, &outcome, Some(at()), at(), Some(10))
}

fn charge(exact: u64, estimated: u64) -> sluice_core::repeat::Orphan {
    let mut orphan = orphan_usage(Some(&Usage::new(100, 20, 0)), 0, 0, None);
    orphan.exact_micros = exact;
    orphan.estimated_micros = estimated;
    orphan
}

fn orphan(message: &JobMessage, attempt: u32, exact: u64, estimated: u64) -> LedgerRow {
    let orphan = charge(exact, estimated);
    LedgerRow::for_repeat(
        message,
        JobStatus::Succeeded,
        Repeat::Orphaned {
            attempt,
            provider: Some("p".into()),
            orphan,
        },
        at(),
    )
}

async fn report(
    ledger: &PgLedger,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> UsageLine {
    let lines = ledger
        .report(&UsageQuery {
            tenant_id: Some(tenant.to_owned()),
            from,
            to,
            group_by: vec![GroupBy::Model],
        })
        .await
        .unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_repeated_call_is_a_row_of_its_own_counted_once_in_reports_and_spend() {
    let db = TestDb::migrated().await;
    let ledger = PgLedger::new(db.pool.clone());
    let tenant = Uuid::new_v4().to_string();
    let key = Uuid::new_v4().to_string();
    let a = message(&tenant, &key);
    let b = message(&tenant, &key);
    let superseded = LedgerRow::for_repeat(
        &b,
        JobStatus::Succeeded,
        Repeat::Superseded {
            attempt: 2,
            provider: "p".into(),
            usage: Usage::new(100, 20, 0),
            cost_micros: 50,
            tier: Tier::Realtime,
        },
        at(),
    );
    // The same attempt's router had given up on a call to the provider
    // before (a timeout): a row of its own beside the attempt's.
    let abandoned = LedgerRow::for_repeat(
        &b,
        JobStatus::Succeeded,
        Repeat::Abandoned {
            attempt: 2,
            call_index: 1,
            provider: "p".into(),
            orphan: charge(10, 30),
            tier: Tier::Realtime,
        },
        at(),
    );
    ledger
        .record(&[
            answered(&a, 100),
            orphan(&a, 1, 40, 60),
            answered(&b, 50),
            superseded,
            abandoned.clone(),
        ])
        .await
        .unwrap();
    // A redelivery writes them all again: nothing more is counted.
    ledger
        .record(&[answered(&a, 100), orphan(&a, 1, 40, 60), abandoned])
        .await
        .unwrap();

    let stored: (String, i64) = sqlx::query_as(
        "SELECT estimated_by, estimated_micros FROM usage_ledger WHERE job_id = $1 AND attempt = 1",
    )
    .bind(a.id.to_string())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, (Estimate::AnsweredAttempt.as_str().to_owned(), 60));

    // By the ledger's rows (a range that is not whole days) …
    let rows = report(
        &ledger,
        &tenant,
        at() - Duration::hours(1),
        at() + Duration::hours(1),
    )
    .await;
    assert_eq!((rows.jobs, rows.repeated_calls), (2, 3));
    assert_eq!((rows.cost_micros, rows.estimated_micros), (250, 90));
    assert_eq!(rows.prompt_tokens, 500, "every billed call's prompt");
    // … and by the daily totals (whole days): the same.
    let day = Utc.with_ymd_and_hms(2026, 11, 17, 0, 0, 0).unwrap();
    let daily = report(&ledger, &tenant, day, day + Duration::days(1)).await;
    assert_eq!(daily, rows);

    let month = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert_eq!(ledger.spend(&tenant, month).await.unwrap(), 340);
    assert_eq!(ledger.key_spend(&key, month).await.unwrap(), 340);
}

#[tokio::test]
async fn usage_groups_by_the_tier_that_answered_in_rows_and_daily_totals() {
    let db = TestDb::migrated().await;
    let ledger = PgLedger::new(db.pool.clone());
    let tenant = Uuid::new_v4().to_string();
    let key = Uuid::new_v4().to_string();
    let job = || message(&tenant, &key);
    ledger
        .record(&[
            answered_on(&job(), 100, Tier::Realtime),
            answered_on(&job(), 50, Tier::Flex),
            answered_on(&job(), 50, Tier::Flex),
            answered_on(&job(), 0, Tier::Cache),
        ])
        .await
        .unwrap();
    let by_tier = |from, to| {
        let ledger = &ledger;
        let tenant = tenant.clone();
        async move {
            ledger
                .report(&UsageQuery {
                    tenant_id: Some(tenant),
                    from,
                    to,
                    group_by: vec![GroupBy::Tier],
                })
                .await
                .unwrap()
                .into_iter()
                .map(|l| (l.group["tier"].clone().unwrap(), l.jobs, l.cost_micros))
                .collect::<Vec<_>>()
        }
    };
    let rows = by_tier(at() - Duration::hours(1), at() + Duration::hours(1)).await;
    assert_eq!(
        rows,
        vec![
            ("cache".to_owned(), 1, 0),
            ("flex".to_owned(), 2, 100),
            ("realtime".to_owned(), 1, 100),
        ]
    );
    let day = Utc.with_ymd_and_hms(2026, 11, 17, 0, 0, 0).unwrap();
    assert_eq!(by_tier(day, day + Duration::days(1)).await, rows);
}
