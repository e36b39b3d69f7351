//! The worker on the in-memory queue and store, with a counting provider:
//! redeliveries, poison messages, cancel, a drained shutdown, and webhook
//! announcements that an ack waits for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use sluice_core::config::WorkerConfig;
use sluice_core::metrics::Metrics;
use sluice_core::webhook::JobWebhook;
use sluice_core::{Endpoint, JobId, JobMessage, JobRecord, JobStatus, Priority, Usage};
use sluice_providers::router::Route;
use sluice_providers::{Answer, Batch, Provider, ProviderError, RetryPolicy, Router};
use sluice_queue::{JobEvents, JobQueue, MemoryQueue, Outgoing, QueueError, Source, Topology};
use sluice_store::jobs::{JobStore, MemoryJobStore};
use tokio_util::sync::CancellationToken;

/// Answers every job with its own id; counts the jobs it saw.
#[derive(Default)]
struct Echo {
    jobs: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl Provider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.jobs.fetch_add(batch.jobs.len(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        batch
            .jobs
            .iter()
            .map(|j| {
                Ok(Answer {
                    body: json!({"echo": j.id.to_string()}),
                    usage: Usage::new(1, 1, 0),
                    cost_micros: Some(3),
                    tier: batch.tier(),
                })
            })
            .collect()
    }
}

/// Announces job ends through the queue, but refuses the first
/// `failures` calls, as a broker that does not confirm them.
struct FlakyEvents {
    queue: Arc<MemoryQueue>,
    failures: AtomicUsize,
    /// Jobs in the calls refused.
    refused: AtomicUsize,
    /// Jobs in the calls that went through.
    announced: AtomicUsize,
}

#[async_trait]
impl JobEvents for FlakyEvents {
    async fn ended(&self, jobs: &[JobRecord]) -> Result<(), QueueError> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            self.refused.fetch_add(jobs.len(), Ordering::SeqCst);
            return Err(QueueError::Nacked);
        }
        self.queue.ended(jobs).await?;
        self.announced.fetch_add(jobs.len(), Ordering::SeqCst);
        Ok(())
    }
}

struct Harness {
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryJobStore>,
    echo: Arc<Echo>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

/// A job of `endpoint` (with `webhook`, if any): its record and message.
fn job(endpoint: Endpoint, webhook: Option<JobWebhook>) -> (JobRecord, JobMessage) {
    let id = JobId::new();
    let mut record = JobRecord::queued(
        id,
        "t".into(),
        endpoint,
        "m".into(),
        Priority::Standard,
        Default::default(),
        Utc::now(),
        None,
    );
    record.webhook = webhook;
    let body = match endpoint {
        Endpoint::Completions => json!({"model": "m", "prompt": format!("p {id}")}),
        _ => json!({"model": "m", "messages": [{"role": "user", "content": format!("p {id}")}]}),
    };
    let message = JobMessage::of(&record, body);
    (record, message)
}

fn outgoing(body: Vec<u8>, id: JobId) -> Outgoing {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("job-id".to_owned(), id.to_string());
    Outgoing {
        priority: Priority::Standard,
        body: body.into(),
        headers,
    }
}

const STANDARD: Source = Source::Jobs(Priority::Standard);

/// Waits until `done` holds, for at most 5 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

impl Harness {
    fn start() -> Self {
        Self::start_with(|queue| queue)
    }

    /// A worker announcing job ends through `events` (given the queue).
    fn start_with(events: impl FnOnce(Arc<MemoryQueue>) -> Arc<dyn JobEvents>) -> Self {
        let queue = Arc::new(MemoryQueue::new(Topology::new("t", 5)));
        let store = Arc::new(MemoryJobStore::new(Duration::from_secs(60)));
        let echo = Arc::new(Echo::default());
        let mut routes = HashMap::new();
        routes.insert(
            "m".to_owned(),
            Route::ordered(vec![echo.clone() as Arc<dyn Provider>], "m"),
        );
        let metrics = Arc::new(Metrics::new());
        let ledger = Arc::new(sluice_store::usage::MemoryLedger::default());
        let worker = sluice_worker::Worker {
            queue: queue.clone(),
            store: store.clone(),
            router: Arc::new(Router::new(routes, RetryPolicy::default())),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            config: WorkerConfig::default(),
            cache: Arc::new(sluice_store::cache::MemoryCache::new()),
            events: events(queue.clone()),
            repeats: sluice_worker::repeats::Repeats::default(),
            provider_batches: None,
            fair: None,
        };
        let stop = CancellationToken::new();
        let worker = tokio::spawn(worker.run(stop.clone()));
        Self {
            queue,
            store,
            echo,
            metrics,
            stop,
            worker,
        }
    }

    /// Stores the job and publishes its message `copies` times.
    async fn submit_job(&self, (record, message): (JobRecord, JobMessage), copies: usize) -> JobId {
        self.store.create(&[record]).await.unwrap();
        let out: Vec<Outgoing> = (0..copies)
            .map(|_| outgoing(message.encode().unwrap(), message.id))
            .collect();
        assert!(self.queue.publish(out).await.iter().all(Result::is_ok));
        message.id
    }

    async fn submit(&self, endpoint: Endpoint, copies: usize) -> JobId {
        self.submit_job(job(endpoint, None), copies).await
    }

    /// Submits a job with a webhook, delivered `copies` times.
    async fn submit_hooked(&self, copies: usize) -> JobId {
        let hooked = job(Endpoint::Completions, Some(JobWebhook::Endpoints));
        self.submit_job(hooked, copies).await
    }

    async fn wait_end(&self, id: JobId) -> JobRecord {
        for _ in 0..500 {
            let job = self.store.get(id).await.unwrap().unwrap();
            if job.status.is_terminal() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not end");
    }

    /// Waits until the worker has taken every message of the standard
    /// queue.
    async fn wait_taken(&self) {
        for _ in 0..500 {
            if self.queue.depth(STANDARD).await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("messages left in the queue");
    }

    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.worker)
            .await
            .expect("the worker drains and returns")
            .unwrap();
    }
}

#[tokio::test]
async fn a_message_delivered_twice_ends_its_job_once_with_its_own_answer() {
    let h = Harness::start();
    let ids: Vec<JobId> =
        futures::future::join_all((0..20).map(|_| h.submit(Endpoint::Completions, 2))).await;
    for id in &ids {
        let job = h.wait_end(*id).await;
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.result.unwrap()["echo"], id.to_string());
    }
    // Both copies are consumed and settled; only the first end counted.
    let (metrics, queue) = (h.metrics.clone(), h.queue.clone());
    h.shutdown().await;
    assert_eq!(queue.depth(STANDARD).await.unwrap(), 0);
    assert_eq!(
        metrics
            .jobs_finished
            .with_label_values(&["succeeded"])
            .get(),
        20
    );
    assert_eq!(metrics.inflight_jobs.get(), 0, "every delivery was settled");
}

#[tokio::test]
async fn a_poison_message_fails_its_job_and_is_dead_lettered() {
    let h = Harness::start();
    let (record, _) = job(Endpoint::ChatCompletions, None);
    h.store.create(std::slice::from_ref(&record)).await.unwrap();
    h.queue
        .publish(vec![outgoing(b"{not json".to_vec(), record.id)])
        .await;
    let job = h.wait_end(record.id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().kind, "undecodable_message");
    assert_eq!(h.echo.jobs.load(Ordering::SeqCst), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_canceled_job_is_acked_without_a_provider_call() {
    let h = Harness::start();
    let (record, message) = job(Endpoint::ChatCompletions, None);
    let id = record.id;
    h.store.create(&[record]).await.unwrap();
    h.store.cancel(id, Utc::now()).await.unwrap();
    h.queue
        .publish(vec![outgoing(message.encode().unwrap(), id)])
        .await;
    let live = h.submit(Endpoint::ChatCompletions, 1).await;
    assert_eq!(h.wait_end(live).await.status, JobStatus::Succeeded);
    // Both messages taken; the shutdown finishes whatever is still held.
    h.wait_taken().await;
    let (queue, store, echo, metrics) = (
        h.queue.clone(),
        h.store.clone(),
        h.echo.clone(),
        h.metrics.clone(),
    );
    h.shutdown().await;
    // The canceled delivery was consumed and acked (a requeued or untaken
    // one would still be in the queue), and never reached the provider.
    assert_eq!(queue.depth(STANDARD).await.unwrap(), 0);
    assert_eq!(metrics.inflight_jobs.get(), 0);
    assert_eq!(echo.jobs.load(Ordering::SeqCst), 1);
    let canceled = store.get(id).await.unwrap().unwrap();
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert_eq!(canceled.attempts, 0, "never started");
}

#[tokio::test]
async fn shutdown_finishes_what_the_worker_holds() {
    let h = Harness::start();
    let ids: Vec<JobId> =
        futures::future::join_all((0..100).map(|_| h.submit(Endpoint::ChatCompletions, 1))).await;
    // Stop while a batch is at the provider: the worker holds jobs.
    let echo = h.echo.clone();
    wait_until("a provider call", || echo.calls.load(Ordering::SeqCst) > 0).await;
    let (queue, store, metrics) = (h.queue.clone(), h.store.clone(), h.metrics.clone());
    h.shutdown().await;
    let mut ended = 0;
    for id in &ids {
        let job = store.get(*id).await.unwrap().unwrap();
        // A job the worker started is finished, never left running.
        assert!(
            matches!(job.status, JobStatus::Succeeded | JobStatus::Queued),
            "{job:?}"
        );
        if job.status == JobStatus::Succeeded {
            ended += 1;
        }
    }
    assert!(ended > 0, "the jobs held at the stop were finished");
    assert_eq!(
        ended,
        echo.jobs.load(Ordering::SeqCst),
        "every job sent to the provider ended, and only those"
    );
    let left = queue.depth(STANDARD).await.unwrap();
    assert_eq!(
        ended + left as usize,
        ids.len(),
        "every job either ended or is back in the queue"
    );
    assert_eq!(metrics.inflight_jobs.get(), 0, "every delivery was settled");
}

#[tokio::test]
async fn a_job_with_a_webhook_is_announced_before_its_ack_and_again_on_redelivery() {
    use sluice_core::webhook::WebhookMessage;
    // The first announcement is refused: that delivery must not be acked
    // but given back, and announced again when it comes back.
    let mut flaky = None;
    let h = Harness::start_with(|queue| {
        let events = Arc::new(FlakyEvents {
            queue,
            failures: AtomicUsize::new(1),
            refused: AtomicUsize::new(0),
            announced: AtomicUsize::new(0),
        });
        flaky = Some(events.clone());
        events
    });
    let flaky = flaky.unwrap();
    let plain = h.submit(Endpoint::Completions, 1).await;
    let hooked = h.submit_hooked(2).await;
    h.wait_end(plain).await;
    let ended = h.wait_end(hooked).await;
    // Two deliveries of one job: two announcements that went through.
    let announced = flaky.clone();
    wait_until("two announcements", || {
        announced.announced.load(Ordering::SeqCst) >= 2
    })
    .await;
    let queue = h.queue.clone();
    h.shutdown().await;
    assert!(flaky.refused.load(Ordering::SeqCst) >= 1, "one was refused");
    assert_eq!(flaky.announced.load(Ordering::SeqCst), 2);
    assert_eq!(
        queue.depth(STANDARD).await.unwrap(),
        0,
        "all acked in the end"
    );

    let mut events = queue
        .consume(Source::Webhooks, 0, CancellationToken::new())
        .await
        .unwrap();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        match WebhookMessage::decode(&d.body).unwrap() {
            WebhookMessage::Event(e) => {
                assert_eq!(e.job_id, hooked);
                assert_eq!(e.webhook_id, format!("msg_{hooked}_succeeded"));
                let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
                assert_eq!(body["data"]["status"], "succeeded");
                assert_eq!(body["data"]["result"], ended.result.clone().unwrap());
            }
            other => panic!("{other:?}"),
        }
        d.ack().await.unwrap();
    }
    // The refused call published nothing, and the job without a webhook
    // announced nothing.
    assert_eq!(queue.depth(Source::Webhooks).await.unwrap(), 0);
}
