//! The behaviour every provider batch store must have, written once and
//! run against both: [`MemoryProviderBatchStore`] in this crate's unit
//! tests, and [`PgProviderBatchStore`] in `tests/provider_batches_pg.rs`
//! (a fresh migrated database per scenario).
//! [`provider_batch_contract_tests!`](crate::provider_batch_contract_tests)
//! makes one test of each scenario for a store, so the list is written
//! once. The races run their calls concurrently in one task: on
//! PostgreSQL they are statements on separate connections. Here: filling
//! batches and submitting them; in `holding`: claims, leases, the
//! holder's writes.
//!
//! Built for this crate's tests, and with the `contract` feature for its
//! integration tests.

// Test support: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sluice_core::{Endpoint, JobId, JobMessage};

use super::*;

mod holding;
pub use holding::*;

/// One `#[tokio::test]` per scenario, each on the store that `$fresh()`
/// makes (with whatever must live as long as it: `(guard, store)`).
#[macro_export]
macro_rules! provider_batch_contract_tests {
    ($fresh:path) => {
        $crate::provider_batch_contract_tests!(
            $fresh;
            appends_fill_batches_to_max_lines_in_order,
            appends_fill_batches_to_max_bytes,
            a_batch_hedges_at_its_earliest_job,
            a_job_appended_again_stays_in_its_batch,
            two_owners_never_claim_the_same_batch,
            a_lease_that_ran_out_is_taken_over,
            a_renewed_lease_is_not_taken_over,
            begin_submit_takes_every_job_and_later_appends_go_to_a_new_batch,
            appends_racing_begin_submit_lose_no_job,
            rerouted_and_settled_jobs_change_what_claim_returns,
            a_finished_batch_is_never_claimed_again,
            release_lets_another_owner_claim_at_once,
            counts_batches_not_done_by_provider_and_state,
            lists_batches_newest_first_with_their_open_jobs,
        );
    };
    ($fresh:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (_keep, store) = $fresh().await;
                $crate::provider_batches::contract::$scenario(&store).await;
            }
        )+
    };
}

/// Where every scenario's clock starts.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 17, 12, 0, 0).unwrap()
}

/// `secs` seconds after [`t0`].
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

const HOUR: i64 = 3600;
/// Longer than any scenario runs on its clock.
const LONG: Duration = Duration::from_secs(100 * 3600);
const LEASE: Duration = Duration::from_secs(60);

pub fn target(provider: &str, model: &str) -> BatchTarget {
    BatchTarget {
        provider: provider.into(),
        model: model.into(),
        endpoint: Endpoint::ChatCompletions,
    }
}

/// A new job's line of `bytes`, to be hedged `hedge_in` seconds after [`t0`].
pub fn line(bytes: u64, hedge_in: i64) -> NewLine {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let message = JobMessage::new(
        JobId::new(),
        "t",
        Endpoint::ChatCompletions,
        "m",
        body,
        t0(),
    );
    NewLine {
        job: BatchedJob {
            message,
            attempt: 2,
            sent_before: vec![1],
        },
        bytes,
        hedge_at: at(hedge_in),
    }
}

fn lines(n: usize, bytes: u64) -> Vec<NewLine> {
    (0..n).map(|_| line(bytes, 24 * HOUR)).collect()
}

/// At most `max_lines` lines and `max_bytes` bytes, collecting for an hour.
pub fn limits(max_lines: usize, max_bytes: u64) -> CollectLimits {
    CollectLimits {
        max_lines,
        max_bytes,
        collect: Duration::from_secs(3600),
    }
}

fn ids(lines: &[NewLine]) -> Vec<JobId> {
    lines.iter().map(|l| l.job.message.id).collect()
}

fn jobs(batch: &HeldBatch) -> Vec<JobId> {
    batch.jobs.iter().map(|j| j.job.message.id).collect()
}

fn batch_ids(batches: &[HeldBatch]) -> Vec<String> {
    batches.iter().map(|b| b.id.clone()).collect()
}

/// Waits `ms` milliseconds, or not at all.
async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// At most `max_lines` lines, of any size.
fn most(max_lines: usize) -> CollectLimits {
    limits(max_lines, u64::MAX)
}

async fn append(
    store: &dyn ProviderBatchStore,
    target: &BatchTarget,
    lines: &[NewLine],
    limits: CollectLimits,
    now: DateTime<Utc>,
) -> Vec<String> {
    store.append(target, lines, limits, now).await.unwrap()
}

/// All that `owner` may claim at `now`.
async fn claim(
    store: &dyn ProviderBatchStore,
    owner: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Vec<HeldBatch> {
    store.claim(owner, lease, 1000, now).await.unwrap()
}

/// The ids of all that `owner` may claim at `now`, leased for long.
async fn claim_ids(store: &dyn ProviderBatchStore, owner: &str, now: DateTime<Utc>) -> Vec<String> {
    batch_ids(&claim(store, owner, LONG, now).await)
}

/// Every batch not done, as an owner of its own sees them long after.
async fn everything(store: &dyn ProviderBatchStore) -> Vec<HeldBatch> {
    claim(store, "auditor", LEASE, at(1000 * HOUR)).await
}

pub async fn appends_fill_batches_to_max_lines_in_order(store: &dyn ProviderBatchStore) {
    let (t, new) = (target("p", "m"), lines(1000, 10));
    let made = append(store, &t, &new, most(300), t0()).await;
    assert_eq!(made.len(), 4);
    // The three full batches close at once; the fourth collects its hour.
    let full = claim(store, "a", LONG, t0()).await;
    assert_eq!(batch_ids(&full), made[..3]);
    for (i, b) in full.iter().enumerate() {
        assert_eq!(
            (b.lines, b.state, &b.target),
            (300, BatchState::Collecting, &t)
        );
        assert_eq!((b.created_at, b.close_at), (t0(), t0()));
        assert_eq!(jobs(b), ids(&new[i * 300..(i + 1) * 300]));
    }
    let first = OpenJob {
        job: new[0].job.clone(),
        rerouted: false,
    };
    assert_eq!(full[0].jobs[0], first);
    assert!(claim_ids(store, "b", at(HOUR - 1)).await.is_empty());
    // The next append tops the fourth up, then opens a fifth.
    let more = lines(250, 10);
    let next = append(store, &t, &more, most(300), at(60)).await;
    assert_eq!(next, [made[3].clone(), next[1].clone()]);
    let fourth = claim(store, "b", LONG, at(60)).await;
    assert_eq!(batch_ids(&fourth), [made[3].clone()]);
    assert_eq!((fourth[0].lines, fourth[0].close_at), (300, at(60)));
    assert_eq!(
        jobs(&fourth[0]),
        [ids(&new[900..]), ids(&more[..200])].concat()
    );
    assert!(claim_ids(store, "c", at(60 + HOUR - 1)).await.is_empty());
    let fifth = claim(store, "c", LONG, at(60 + HOUR)).await;
    assert_eq!(batch_ids(&fifth), [next[1].clone()]);
    assert_eq!((fifth[0].lines, fifth[0].created_at), (50, at(60)));
}

pub async fn appends_fill_batches_to_max_bytes(store: &dyn ProviderBatchStore) {
    let (t, small) = (target("p", "m"), lines(5, 400));
    let made = append(store, &t, &small, limits(100, 1000), t0()).await;
    assert_eq!(made.len(), 3);
    // Too big for any batch: alone in a new one; every batch it passed
    // could not take the next line, so is full.
    let alone = append(store, &t, &[line(1500, HOUR)], limits(100, 1000), t0()).await;
    assert_eq!(alone.len(), 1);
    assert!(!made.contains(&alone[0]));
    let all = claim(store, "a", LONG, t0()).await;
    assert_eq!(batch_ids(&all), [made.clone(), alone].concat());
    let sizes: Vec<u64> = all.iter().map(|b| b.lines).collect();
    assert_eq!(sizes, [2, 2, 1, 1]);
    assert_eq!(jobs(&all[1]), ids(&small[2..4]));
    // A line that fits still goes into the oldest batch with room.
    let fits = append(store, &t, &[line(200, HOUR)], limits(100, 1000), t0()).await;
    assert_eq!(fits, [made[0].clone()]);
}

pub async fn a_batch_hedges_at_its_earliest_job(store: &dyn ProviderBatchStore) {
    let t = target("p", "m");
    let made = append(
        store,
        &t,
        &[line(1, 5 * HOUR), line(1, 2 * HOUR)],
        most(9),
        t0(),
    )
    .await;
    append(store, &t, &[line(1, 3 * HOUR)], most(9), at(60)).await;
    let held = claim(store, "a", LONG, at(HOUR)).await;
    assert_eq!(batch_ids(&held), made);
    assert_eq!((held[0].created_at, held[0].close_at), (t0(), at(HOUR)));
    assert_eq!((held[0].hedge_at, held[0].lines), (at(2 * HOUR), 3));
    // Claimed but still collecting: it takes more, and hedges earlier.
    let next = append(store, &t, &[line(1, HOUR / 2)], most(9), at(HOUR)).await;
    assert_eq!(next, made);
    let held = claim(store, "a", LONG, at(HOUR)).await;
    assert_eq!((held[0].hedge_at, held[0].lines), (at(HOUR / 2), 4));
}

pub async fn a_job_appended_again_stays_in_its_batch(store: &dyn ProviderBatchStore) {
    let (t, first) = (target("p", "m"), lines(2, 10));
    let twice = [first.clone(), vec![first[1].clone()]].concat();
    let made = append(store, &t, &twice, most(9), t0()).await;
    assert_eq!(made.len(), 1);
    // Delivered again: the job stays where it is; a new one joins it.
    let again = vec![first[0].clone(), line(10, HOUR)];
    assert_eq!(append(store, &t, &again, most(9), at(1)).await, made);
    let held = claim(store, "a", LONG, at(HOUR)).await;
    assert_eq!(held[0].lines, 3);
    assert_eq!(jobs(&held[0]), [ids(&first), ids(&again[1..])].concat());
    // Re-routed from a batch past collecting, it goes into a new one.
    store.begin_submit(&made[0], "a").await.unwrap().unwrap();
    let job = ids(&first[..1]);
    assert!(store.rerouted(&made[0], "a", &job, false).await.unwrap());
    let back = append(store, &t, &first[..1], most(9), at(HOUR)).await;
    assert_eq!(back.len(), 1);
    assert_ne!(back, made);
}

pub async fn begin_submit_takes_every_job_and_later_appends_go_to_a_new_batch(
    store: &dyn ProviderBatchStore,
) {
    let (t, first) = (target("p", "m"), lines(3, 10));
    let made = append(store, &t, &first, most(9), t0()).await;
    let id = &made[0];
    assert_eq!(claim_ids(store, "a", at(HOUR)).await, made);
    // Appended after the claim, before the submission: still in it.
    let second = lines(2, 10);
    assert_eq!(append(store, &t, &second, most(9), at(HOUR)).await, made);
    assert_eq!(store.begin_submit(id, "b").await.unwrap(), None);
    let sub = store.begin_submit(id, "a").await.unwrap().unwrap();
    assert_eq!((sub.state, sub.lines), (BatchState::Submitting, 5));
    assert_eq!(jobs(&sub), [ids(&first), ids(&second)].concat());
    assert_eq!(store.begin_submit(id, "a").await.unwrap(), None);
    assert_ne!(
        append(store, &t, &lines(1, 10), most(9), at(HOUR)).await,
        made
    );
    let now = at(HOUR + 5);
    assert!(!store.submitted(id, "b", "remote-1", now).await.unwrap());
    assert!(store.submitted(id, "a", "remote-1", now).await.unwrap());
    assert!(!store.submitted(id, "a", "remote-2", now).await.unwrap());
    let held = claim(store, "a", LONG, now).await;
    assert_eq!(batch_ids(&held), made);
    assert_eq!(held[0].state, BatchState::Submitted);
    assert_eq!(held[0].remote_id.as_deref(), Some("remote-1"));
    assert_eq!(
        (held[0].submitted_at, &held[0].jobs),
        (Some(now), &sub.jobs)
    );
}

pub async fn appends_racing_begin_submit_lose_no_job(store: &dyn ProviderBatchStore) {
    let mut appended = Vec::new();
    let mut submitted: HashMap<String, Vec<JobId>> = HashMap::new();
    for i in 0..30 {
        let t = target("p", &format!("race-{i}"));
        let (first, late, owner) = (lines(5, 10), lines(5, 10), format!("w{i}"));
        let made = append(store, &t, &first, most(1000), t0()).await;
        assert_eq!(claim_ids(store, &owner, at(HOUR)).await, made);
        // Vary which of the two reaches the batch first.
        let (submit_after, append_after) = [(0, 0), (0, 1), (1, 0)][i % 3];
        let (sub, went) = futures::join!(
            async {
                pause(submit_after).await;
                store.begin_submit(&made[0], &owner).await.unwrap().unwrap()
            },
            async {
                pause(append_after).await;
                append(store, &t, &late, most(1000), at(HOUR)).await
            }
        );
        assert_eq!(went.len(), 1);
        let joined = [ids(&first), ids(&late)].concat();
        assert_eq!(jobs(&sub), if went == made { joined } else { ids(&first) });
        submitted.insert(sub.id.clone(), jobs(&sub));
        appended.extend(ids(&first).into_iter().chain(ids(&late)));
    }
    // Every job is in exactly one batch; a submitting batch holds exactly
    // the jobs begin_submit told.
    let all = everything(store).await;
    let mut found: Vec<JobId> = all.iter().flat_map(jobs).collect();
    found.sort();
    appended.sort();
    assert_eq!(found, appended);
    let submitting: HashMap<String, Vec<JobId>> = (all.iter())
        .filter(|b| b.state == BatchState::Submitting)
        .map(|b| (b.id.clone(), jobs(b)))
        .collect();
    assert_eq!(submitting, submitted);
}

#[cfg(test)]
mod memory {
    use super::MemoryProviderBatchStore;

    async fn fresh() -> ((), MemoryProviderBatchStore) {
        ((), MemoryProviderBatchStore::new())
    }

    crate::provider_batch_contract_tests!(fresh);
}
