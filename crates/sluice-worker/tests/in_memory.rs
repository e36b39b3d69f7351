//! The worker on the in-memory queue and store, with a counting provider:
//! redeliveries, poison messages, cancel, and a drained shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use sluice_core::config::WorkerConfig;
use sluice_core::metrics::Metrics;
use sluice_core::{Endpoint, JobId, JobMessage, JobRecord, JobStatus, Priority, Usage};
use sluice_providers::router::Route;
use sluice_providers::{Answer, Batch, Provider, ProviderError, RetryPolicy, Router};
use sluice_queue::{JobQueue, MemoryQueue, Outgoing, Topology};
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
                })
            })
            .collect()
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

fn message(endpoint: Endpoint) -> (JobRecord, JobMessage) {
    let id = JobId::new();
    let now = Utc::now();
    let body = match endpoint {
        Endpoint::Completions => json!({"model": "m", "prompt": format!("p {id}")}),
        _ => json!({"model": "m", "messages": [{"role": "user", "content": format!("p {id}")}]}),
    };
    let record = JobRecord::queued(
        id,
        "t".into(),
        endpoint,
        "m".into(),
        Priority::Standard,
        Default::default(),
        now,
        None,
    );
    let message = JobMessage::new(id, "t", endpoint, "m", body, now);
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

impl Harness {
    fn start() -> Self {
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
            events: queue.clone(),
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

    async fn submit(&self, endpoint: Endpoint, copies: usize) -> JobId {
        let (record, message) = message(endpoint);
        self.publish(record, message, copies).await
    }

    /// Submits a job with a webhook, delivered `copies` times.
    async fn submit_hooked(&self, copies: usize) -> JobId {
        let (mut record, mut message) = message(Endpoint::Completions);
        let hook = sluice_core::webhook::JobWebhook::Endpoints;
        record.webhook = Some(hook.clone());
        message.webhook = Some(hook);
        self.publish(record, message, copies).await
    }

    /// Stores the record and publishes the message `copies` times.
    async fn publish(&self, record: JobRecord, message: JobMessage, copies: usize) -> JobId {
        self.store.create(&[record]).await.unwrap();
        let out: Vec<Outgoing> = (0..copies)
            .map(|_| outgoing(message.encode().unwrap(), message.id))
            .collect();
        assert!(self.queue.publish(out).await.iter().all(Result::is_ok));
        message.id
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
    assert_eq!(
        queue
            .depth(sluice_queue::Source::Jobs(Priority::Standard))
            .await
            .unwrap(),
        0
    );
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
    let (record, _) = message(Endpoint::ChatCompletions);
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
    let (record, message) = message(Endpoint::ChatCompletions);
    h.store.create(std::slice::from_ref(&record)).await.unwrap();
    h.store.cancel(record.id, Utc::now()).await.unwrap();
    h.queue
        .publish(vec![outgoing(message.encode().unwrap(), message.id)])
        .await;
    let live = h.submit(Endpoint::ChatCompletions, 1).await;
    assert_eq!(h.wait_end(live).await.status, JobStatus::Succeeded);
    assert_eq!(h.echo.jobs.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.store.get(record.id).await.unwrap().unwrap().status,
        JobStatus::Canceled
    );
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_what_the_worker_holds() {
    let h = Harness::start();
    let ids: Vec<JobId> =
        futures::future::join_all((0..100).map(|_| h.submit(Endpoint::ChatCompletions, 1))).await;
    // Stop while batches are in flight; whatever was taken is finished.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (queue, store) = (h.queue.clone(), h.store.clone());
    h.shutdown().await;
    let mut ended = 0;
    for id in &ids {
        let job = store.get(*id).await.unwrap().unwrap();
        assert!(
            matches!(job.status, JobStatus::Succeeded | JobStatus::Queued),
            "{job:?}"
        );
        if job.status == JobStatus::Succeeded {
            ended += 1;
        }
    }
    let left = queue
        .depth(sluice_queue::Source::Jobs(Priority::Standard))
        .await
        .unwrap();
    assert_eq!(
        ended + left as usize,
        ids.len(),
        "every job either ended or is back in the queue"
    );
}

#[tokio::test]
async fn a_job_with_a_webhook_is_announced_before_its_ack_and_again_on_redelivery() {
    use sluice_core::webhook::WebhookMessage;
    use sluice_queue::Source;
    let h = Harness::start();
    let plain = h.submit(Endpoint::Completions, 1).await;
    let hooked = h.submit_hooked(2).await;
    h.wait_end(plain).await;
    let ended = h.wait_end(hooked).await;
    use futures::StreamExt;
    let mut events = h
        .queue
        .consume(Source::Webhooks, 0, CancellationToken::new())
        .await
        .unwrap();
    // Two deliveries of one job: two announcements, with one webhook-id.
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
    // The job without a webhook announced nothing.
    assert_eq!(h.queue.depth(Source::Webhooks).await.unwrap(), 0);
    h.shutdown().await;
}
