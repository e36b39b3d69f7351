//! The behaviour every job store must have, run against the in-memory
//! store and against the real Redis (a unique prefix per test, deleted
//! after).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sluice_core::job::{CancelOutcome, Outcome, StartOutcome};
use sluice_core::{Endpoint, JobError, JobId, JobRecord, JobStatus, Priority, Tier, Usage};
use tokio_util::sync::CancellationToken;

use super::*;

fn fresh(deadline_in: Option<chrono::Duration>) -> JobRecord {
    let now = Utc::now();
    let mut meta = sluice_core::job::Metadata::new();
    meta.insert("feature".into(), json!("search"));
    JobRecord::queued(
        JobId::new(),
        "tenant-a".into(),
        Endpoint::ChatCompletions,
        "mock-small".into(),
        Priority::Standard,
        meta,
        now,
        deadline_in.map(|d| now + d),
    )
}

fn success(text: &str) -> Outcome {
    Outcome::Succeeded {
        result: json!({"choices": [{"text": text}]}),
        usage: Usage::new(10, 5, 2),
        provider: "p".into(),
        cost_micros: Some(1234),
        tier: Tier::Flex,
    }
}

async fn a_job_moves_forward_once(store: &dyn JobStore) {
    let job = fresh(None);
    store.create(std::slice::from_ref(&job)).await.unwrap();
    let read = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(read, job);
    assert_eq!(read.tenant_id, "tenant-a");

    let now = Utc::now();
    assert_eq!(
        store.start(job.id, now).await.unwrap(),
        StartOutcome::Started {
            attempt: 1,
            sent_before: vec![]
        }
    );
    // A redelivery starts it again: another attempt.
    assert_eq!(
        store.start(job.id, now).await.unwrap(),
        StartOutcome::Started {
            attempt: 2,
            sent_before: vec![]
        }
    );
    assert!(store.finish(job.id, &success("first"), now).await.unwrap());
    // A second end is a no-op; the first result stands.
    assert!(!store.finish(job.id, &success("second"), now).await.unwrap());
    let failed = Outcome::Failed(JobError::new("x", "y"));
    assert!(!store.finish(job.id, &failed, now).await.unwrap());
    assert_eq!(
        store.start(job.id, now).await.unwrap(),
        StartOutcome::AlreadyDone(JobStatus::Succeeded)
    );
    let done = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result, Some(json!({"choices": [{"text": "first"}]})));
    assert_eq!(done.usage, Some(Usage::new(10, 5, 2)));
    assert_eq!(done.cost_micros, Some(1234));
    assert_eq!(done.tier, Some(Tier::Flex));
    assert_eq!(done.attempts, 2);
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(done.error, None);
    let gone = JobId::new();
    assert_eq!(
        store.statuses(&[job.id, gone]).await.unwrap(),
        [Some(JobStatus::Succeeded), None]
    );
    assert_eq!(store.statuses(&[]).await.unwrap(), []);
}

/// A batch's jobs change together, each by its own state; every answer
/// is its own job's.
async fn a_batch_changes_each_job_on_its_own(store: &dyn JobStore) {
    let now = Utc::now();
    let (queued, overdue, done) = (
        fresh(None),
        fresh(Some(chrono::Duration::milliseconds(-1))),
        fresh(None),
    );
    let missing = JobId::new();
    store
        .create(&[queued.clone(), overdue.clone(), done.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.get(overdue.id).await.unwrap().as_ref(),
        Some(&overdue)
    );
    store.start(done.id, now).await.unwrap();
    assert!(store
        .finish(done.id, &success("earlier"), now)
        .await
        .unwrap());

    let started = store
        .start_many(&[queued.id, missing, overdue.id, done.id], now)
        .await
        .unwrap();
    assert_eq!(
        started,
        vec![
            StartOutcome::Started {
                attempt: 1,
                sent_before: vec![]
            },
            StartOutcome::Missing,
            StartOutcome::Expired,
            StartOutcome::AlreadyDone(JobStatus::Succeeded),
        ]
    );

    let (mine, late) = (success("mine"), success("late"));
    let ended = store
        .finish_many(
            &[
                (done.id, &late),
                (queued.id, &mine),
                (missing, &late),
                (overdue.id, &late),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(ended, vec![false, true, false, false]);
    let text = |id| async move { store.get(id).await.unwrap().unwrap().result };
    assert_eq!(
        text(queued.id).await,
        Some(json!({"choices": [{"text": "mine"}]}))
    );
    assert_eq!(
        text(done.id).await,
        Some(json!({"choices": [{"text": "earlier"}]}))
    );
    assert_eq!(text(overdue.id).await, None);
    let expired = store.get(overdue.id).await.unwrap().unwrap();
    assert_eq!(expired.status, JobStatus::Expired);
    assert_eq!(
        expired.error.map(|e| e.kind),
        Some("deadline_exceeded".into())
    );
    assert!(store.start_many(&[], now).await.unwrap().is_empty());
    assert!(store.finish_many(&[], now).await.unwrap().is_empty());
}

async fn cancel_only_stops_queued_jobs(store: &dyn JobStore) {
    let now = Utc::now();
    let queued = fresh(None);
    let running = fresh(None);
    store
        .create(&[queued.clone(), running.clone()])
        .await
        .unwrap();
    store.start(running.id, now).await.unwrap();
    assert_eq!(
        store.cancel(queued.id, now).await.unwrap(),
        CancelOutcome::Canceled
    );
    assert_eq!(
        store.cancel(running.id, now).await.unwrap(),
        CancelOutcome::NotCancelable(JobStatus::Running)
    );
    assert_eq!(
        store.cancel(JobId::new(), now).await.unwrap(),
        CancelOutcome::NotFound
    );
    // A canceled job never starts.
    assert_eq!(
        store.start(queued.id, now).await.unwrap(),
        StartOutcome::AlreadyDone(JobStatus::Canceled)
    );
    assert!(!store
        .finish(queued.id, &success("late"), now)
        .await
        .unwrap());
}

async fn a_job_waiting_in_a_provider_batch_shows_it_and_may_be_canceled(store: &dyn JobStore) {
    let now = Utc::now();
    let (waiting, back) = (fresh(None), fresh(None));
    store
        .create(&[waiting.clone(), back.clone()])
        .await
        .unwrap();
    let ids = [waiting.id, back.id];
    store.start_many(&ids, now).await.unwrap();
    store
        .mark_waiting(&ids, Some(Tier::ProviderBatch))
        .await
        .unwrap();
    let shown = store.get(waiting.id).await.unwrap().unwrap();
    assert_eq!(
        (shown.status, shown.tier),
        (JobStatus::Running, Some(Tier::ProviderBatch))
    );
    // Sent back to the queue: no longer waiting, so no longer cancelable.
    store.mark_waiting(&[back.id], None).await.unwrap();
    assert_eq!(store.get(back.id).await.unwrap().unwrap().tier, None);
    assert_eq!(
        store.cancel(back.id, now).await.unwrap(),
        CancelOutcome::NotCancelable(JobStatus::Running)
    );
    assert_eq!(
        store.cancel(waiting.id, now).await.unwrap(),
        CancelOutcome::Canceled
    );
    // Its line, answered anyway, does not end it again.
    assert!(!store
        .finish(waiting.id, &success("late"), now)
        .await
        .unwrap());
    // A job that is not running is not marked.
    let queued = fresh(None);
    store.create(std::slice::from_ref(&queued)).await.unwrap();
    store
        .mark_waiting(&[queued.id], Some(Tier::ProviderBatch))
        .await
        .unwrap();
    assert_eq!(store.get(queued.id).await.unwrap().unwrap().tier, None);
}

async fn a_queued_job_past_its_deadline_expires(store: &dyn JobStore) {
    let job = fresh(Some(chrono::Duration::milliseconds(-1)));
    let later = fresh(Some(chrono::Duration::seconds(60)));
    store.create(&[job.clone(), later.clone()]).await.unwrap();
    let now = Utc::now();
    assert_eq!(
        store.start(job.id, now).await.unwrap(),
        StartOutcome::Expired
    );
    let read = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(read.status, JobStatus::Expired);
    assert_eq!(read.error.unwrap().kind, "deadline_exceeded");
    assert_eq!(
        store.start(later.id, now).await.unwrap(),
        StartOutcome::Started {
            attempt: 1,
            sent_before: vec![]
        }
    );

    // Reading a queued job past its deadline expires it too.
    let polled = fresh(Some(chrono::Duration::milliseconds(-1)));
    store.create(std::slice::from_ref(&polled)).await.unwrap();
    let read = get_current(store, polled.id, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, JobStatus::Expired);
}

async fn a_watcher_wakes_on_the_end(store: &dyn JobStore) {
    let job = fresh(None);
    store.create(std::slice::from_ref(&job)).await.unwrap();
    let mut watch = store.watch(job.id);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), watch.changed())
            .await
            .is_err()
    );
    store.start(job.id, Utc::now()).await.unwrap();
    store
        .finish(job.id, &success("x"), Utc::now())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the finish woke the watcher");

    // Jobs that end together (one message on Redis) wake each watcher.
    let (a, b) = (fresh(None), fresh(None));
    store.create(&[a.clone(), b.clone()]).await.unwrap();
    let (mut watch_a, mut watch_b) = (store.watch(a.id), store.watch(b.id));
    let ok = success("x");
    let ended = store
        .finish_many(&[(a.id, &ok), (b.id, &ok)], Utc::now())
        .await
        .unwrap();
    assert_eq!(ended, vec![true, true]);
    for watch in [&mut watch_a, &mut watch_b] {
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the batch's finish woke each watcher");
    }
}

async fn an_idempotency_key_is_held_until_its_holder_gives_it_back(store: &dyn JobStore) {
    let (tenant, key, ttl) = (
        "tenant-a",
        format!("k-{}", JobId::new()),
        Duration::from_secs(60),
    );
    let (first, second) = (JobId::new(), JobId::new());
    let claim = store.claim_idempotency(tenant, &key, "fp1", first, ttl);
    assert_eq!(claim.await.unwrap(), IdempotencyClaim::Claimed);
    let held = IdempotencyClaim::Held {
        job: first,
        fingerprint: "fp1".into(),
    };
    let claim = store.claim_idempotency(tenant, &key, "fp2", second, ttl);
    assert_eq!(claim.await.unwrap(), held);
    // Another tenant's key of the same name is its own.
    let claim = store.claim_idempotency("tenant-b", &key, "fp2", second, ttl);
    assert_eq!(claim.await.unwrap(), IdempotencyClaim::Claimed);
    // Only the job that holds the key gives it back.
    store
        .release_idempotency(tenant, &key, second)
        .await
        .unwrap();
    let claim = store.claim_idempotency(tenant, &key, "fp2", second, ttl);
    assert_eq!(claim.await.unwrap(), held);
    store
        .release_idempotency(tenant, &key, first)
        .await
        .unwrap();
    let claim = store.claim_idempotency(tenant, &key, "fp2", second, ttl);
    assert_eq!(claim.await.unwrap(), IdempotencyClaim::Claimed);
}

/// Each attempt whose call left is marked, once; a redelivery learns which
/// earlier attempts' calls left (they never answered), and an ended job is
/// not marked.
async fn sent_attempts_are_marked_and_told_to_the_next_start(store: &dyn JobStore) {
    let job = fresh(None);
    let other = fresh(None);
    store.create(&[job.clone(), other.clone()]).await.unwrap();
    let now = Utc::now();
    store.start_many(&[job.id, other.id], now).await.unwrap();
    // The call of `job` left (marked twice: a retry), `other`'s did not.
    store.mark_sent(&[job.id]).await.unwrap();
    store.mark_sent(&[job.id]).await.unwrap();
    assert_eq!(store.get(job.id).await.unwrap().unwrap().sent, vec![1]);
    // Both workers died; both jobs are delivered again.
    let again = store.start_many(&[job.id, other.id], now).await.unwrap();
    assert_eq!(
        again,
        vec![
            StartOutcome::Started {
                attempt: 2,
                sent_before: vec![1]
            },
            StartOutcome::Started {
                attempt: 2,
                sent_before: vec![]
            },
        ]
    );
    store.mark_sent(&[job.id, other.id]).await.unwrap();
    assert!(store.finish(job.id, &success("x"), now).await.unwrap());
    store.mark_sent(&[job.id]).await.unwrap();
    let ended = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((ended.attempts, ended.sent), (2, vec![1, 2]));
    assert_eq!(store.get(other.id).await.unwrap().unwrap().sent, vec![2]);
}

/// A chunk log keeps each job's entries in order, reads on from a
/// position, and wakes the job's watchers.
async fn a_chunk_log_is_read_in_order_and_wakes_its_watchers(store: &dyn JobStore) {
    use sluice_core::stream::StreamEntry;
    let (a, b) = (JobId::new(), JobId::new());
    let chunk = |text: &str| StreamEntry::Chunk(text.to_owned());
    assert!(store.read_chunks(a, None, 10).await.unwrap().is_empty());
    let mut watch = store.watch(a);
    store
        .append_chunks(&[
            (a, vec![StreamEntry::Begin, chunk("{\"n\":1}")]),
            (b, vec![chunk("other")]),
        ])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the append woke the watcher");
    store
        .append_chunks(&[(a, vec![chunk("2"), chunk("3")])])
        .await
        .unwrap();
    let all = store.read_chunks(a, None, 10).await.unwrap();
    let entries: Vec<StreamEntry> = all.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        entries,
        vec![
            StreamEntry::Begin,
            chunk("{\"n\":1}"),
            chunk("2"),
            chunk("3")
        ]
    );
    let first_two = store.read_chunks(a, None, 2).await.unwrap();
    assert_eq!(first_two.len(), 2);
    let rest = store
        .read_chunks(a, Some(&first_two[1].0), 10)
        .await
        .unwrap();
    assert_eq!(rest, all[2..].to_vec());
    assert!(store
        .read_chunks(a, Some(&all[3].0), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.read_chunks(b, None, 10).await.unwrap()[0].1,
        chunk("other")
    );
}

async fn run_all(store: &dyn JobStore) {
    a_job_moves_forward_once(store).await;
    sent_attempts_are_marked_and_told_to_the_next_start(store).await;
    an_idempotency_key_is_held_until_its_holder_gives_it_back(store).await;
    a_batch_changes_each_job_on_its_own(store).await;
    cancel_only_stops_queued_jobs(store).await;
    a_job_waiting_in_a_provider_batch_shows_it_and_may_be_canceled(store).await;
    a_queued_job_past_its_deadline_expires(store).await;
    assert!(store.get(JobId::new()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_record_is_kept_until_its_deadline_and_its_retention_after() {
    let store = MemoryJobStore::new(Duration::ZERO);
    let waits = fresh(Some(chrono::Duration::hours(1)));
    let cannot = fresh(None);
    store
        .create(&[waits.clone(), cannot.clone()])
        .await
        .unwrap();
    // The next write drops what is past its time.
    store.create(&[fresh(None)]).await.unwrap();
    assert!(store.get(waits.id).await.unwrap().is_some());
    assert!(store.get(cannot.id).await.unwrap().is_none());
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    let store = MemoryJobStore::new(Duration::from_secs(60));
    run_all(&store).await;
    a_watcher_wakes_on_the_end(&store).await;
    a_chunk_log_is_read_in_order_and_wakes_its_watchers(&store).await;
}

fn redis_url() -> String {
    std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let prefix = format!("test-{}", JobId::new().to_string().to_lowercase());
    let store = Arc::new(
        RedisJobStore::connect(RedisOptions {
            url: redis_url(),
            prefix,
            retention: Duration::from_secs(60),
            pool_size: 2,
        })
        .await
        .expect("redis at SLUICE_REDIS_URL or 127.0.0.1:6379"),
    );
    run_all(store.as_ref()).await;

    let stop = CancellationToken::new();
    let listener = store.subscribe().await.unwrap();
    #[allow(clippy::disallowed_methods)]
    let listening = tokio::spawn(listener.run(stop.clone()));
    a_watcher_wakes_on_the_end(store.as_ref()).await;
    a_chunk_log_is_read_in_order_and_wakes_its_watchers(store.as_ref()).await;
    stop.cancel();
    listening.await.unwrap();

    assert!(store.delete_all().await.unwrap() > 0);
    assert_eq!(store.delete_all().await.unwrap(), 0);
    store.close().await;
}

#[tokio::test]
async fn redis_budget_is_shared_and_bounded() {
    use sluice_core::budget::{BudgetLimits, Grant, RateBudget};
    let prefix = format!("test-{}", JobId::new().to_string().to_lowercase());
    let store = RedisJobStore::connect(RedisOptions {
        url: redis_url(),
        prefix,
        retention: Duration::from_secs(60),
        pool_size: 2,
    })
    .await
    .unwrap();
    // Two handles, as two workers would have: one budget between them.
    let (a, b) = (store.budget(), store.budget());
    let limits = BudgetLimits {
        requests_per_minute: Some(5),
        tokens_per_minute: Some(1_000),
        window: None,
    };
    let mut granted = 0;
    for i in 0..10 {
        let budget = if i % 2 == 0 { &a } else { &b };
        if budget.try_acquire("mock", &limits, 1, 10).await.unwrap() == Grant::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 5);
    match a.try_acquire("mock", &limits, 1, 10).await.unwrap() {
        Grant::Wait(d) => assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_secs(61),
            "{d:?}"
        ),
        Grant::Granted => panic!("over the limit"),
    }
    // Tokens bind too; another provider is untouched.
    assert_eq!(
        a.try_acquire("other", &limits, 1, 990).await.unwrap(),
        Grant::Granted
    );
    assert!(matches!(
        a.try_acquire("other", &limits, 1, 20).await.unwrap(),
        Grant::Wait(_)
    ));

    // A provider that counts over 600 ms: 10 ms slots, the window slides
    // past within a second.
    let short = BudgetLimits {
        window: Some(Duration::from_millis(600)),
        ..limits
    };
    for _ in 0..5 {
        assert_eq!(
            b.try_acquire("fast", &short, 1, 10).await.unwrap(),
            Grant::Granted
        );
    }
    match b.try_acquire("fast", &short, 1, 10).await.unwrap() {
        Grant::Wait(d) => assert!(
            d >= Duration::from_millis(10) && d <= Duration::from_millis(610),
            "{d:?}"
        ),
        Grant::Granted => panic!("over the limit"),
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        b.try_acquire("fast", &short, 1, 10).await.unwrap(),
        Grant::Granted
    );
    assert!(store.delete_all().await.unwrap() >= 2);
    store.close().await;
}
