//! `sluice dev`: api, worker and mock provider in one process, on the
//! in-memory queue and stores. Nothing to install; nothing is kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_api::AppState;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_mock::{LatencyOptions, MockOptions, MockServer};
use sluice_providers::Router;
use sluice_queue::{MemoryQueue, Topology};
use sluice_store::jobs::MemoryJobStore;
use sluice_store::provider_batches::MemoryProviderBatchStore;
use sluice_store::tenants::{MemoryTenantStore, TenantStore};
use sluice_worker::provider_batch::ProviderBatches;
use sluice_worker::Worker;
use tokio_util::task::TaskTracker;

use crate::runtime::{say, shutdown_signal};

pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let tasks = TaskTracker::new();

    let mock_socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_url = url::Url::parse(&format!("http://{}/v1", mock_socket.local_addr()?))?;
    {
        let stop = shutdown.clone();
        let mock = MockServer::new(MockOptions {
            latency: LatencyOptions {
                fixed_ms: 50,
                per_completion_token_us: 500,
                ..LatencyOptions::default()
            },
            ..MockOptions::default()
        });
        tasks.spawn(async move {
            if let Err(e) = mock
                .serve(mock_socket, async move { stop.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "mock provider stopped");
            }
        });
    }

    let config = Config::dev(mock_url.clone());
    let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
    let queue = Arc::new(MemoryQueue::new(
        Topology::new("dev", config.worker.delivery_limit)
            .with_webhook_delays(config.webhooks.delays_ms()),
    ));
    let store = Arc::new(MemoryJobStore::new(Duration::from_secs(
        config.jobs.retention_s,
    )));
    let tenants = Arc::new(MemoryTenantStore::new());
    tenants.create_tenant("dev").await?;
    let key = tenants.create_key("dev", "dev").await?.key;

    let ledger = Arc::new(sluice_store::usage::MemoryLedger::default());
    let cache = Arc::new(sluice_store::cache::MemoryCache::new());
    let fair = sluice_worker::fair::Fair::new(
        Arc::new(sluice_store::fair::MemoryFairStore::default()),
        &config,
    );
    let worker = Worker {
        queue: queue.clone(),
        store: store.clone(),
        router: Arc::new(Router::from_config(
            &config,
            Arc::clone(&metrics),
            Some(Arc::new(sluice_core::budget::MemoryBudget::default())),
            sluice_worker::relay::call_hooks(store.clone(), Some(fair.gate.clone()), &tasks),
        )?),
        ledger: ledger.clone(),
        metrics: Arc::clone(&metrics),
        config: config.worker.clone(),
        cache: cache.clone(),
        events: queue.clone(),
        repeats: sluice_worker::repeats::Repeats::new(&config),
        provider_batches: ProviderBatches::from_config(
            &config,
            &metrics,
            Arc::new(MemoryProviderBatchStore::default()),
        )?,
        fair: Some(fair),
    };
    tasks.spawn(worker.run(shutdown.clone()));

    let webhook_store = Arc::new(sluice_store::webhooks::MemoryWebhookStore::new());
    let dispatcher = sluice_webhooks::Dispatcher {
        queue: queue.clone(),
        retries: queue.clone(),
        store: webhook_store.clone(),
        topology: queue.topology().clone(),
        config: config.webhooks.clone(),
        metrics: sluice_webhooks::WebhookMetrics::register(&metrics),
    };
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = dispatcher.run(stop).await {
            tracing::error!(error = %e, "webhooks stopped");
        }
    });

    let limiter = Arc::new(sluice_core::budget::MemoryBudget::default());
    let backends = sluice_api::Backends {
        config: Arc::new(config),
        queue: queue.clone(),
        store,
        tenants,
        metrics,
        limiter,
        usage: ledger,
        cache,
        embedder: None,
        lexicon: None,
        webhooks: webhook_store,
        events: queue.clone(),
        webhook_queue: queue.clone(),
        files: Arc::new(sluice_store::files::MemoryFileStore::default()),
        batches: Arc::new(sluice_store::batches::MemoryBatchStore::default()),
    };
    let state = AppState::new(backends, &tasks).with_shutdown(shutdown.clone());
    tasks.spawn(sluice_api::batches::drive(state.clone(), shutdown.clone()));
    let socket = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (try --listen 127.0.0.1:0)"))?;
    let addr = socket.local_addr()?;
    say(&format!(
        "sluice dev: api on http://{addr}, mock provider on {mock_url}"
    ));
    say("everything is in memory: jobs, tenants and keys are gone when this stops");
    say(&format!("api key: {key}"));
    say("try:");
    say(&format!(
        "curl -s -X POST http://{addr}/v1/jobs -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
-d '{{\"body\": {{\"model\": \"mock-small\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}}}' \
| sed -E 's/.*\"id\":\"([0-9A-Z]+)\".*/\\1/' \
| xargs -I{{}} curl -s 'http://{addr}/v1/jobs/{{}}?wait=10' -H 'Authorization: Bearer {key}'"
    ));
    let stop = shutdown.clone();
    sluice_api::serve(socket, state, async move { stop.cancelled().await }).await?;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}
