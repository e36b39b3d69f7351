//! `sluice api`: the HTTP front.
//!
//! It binds its listener first and answers `/healthz` (200) and `/readyz`
//! (503) while it waits for PostgreSQL, Redis and RabbitMQ
//! ([`super::front`], [`super::wait`]); then it serves the API.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sluice_api::AppState;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_queue::{AmqpQueue, JobQueue};
use sluice_store::jobs::RedisJobStore;
use sluice_store::tenants::PgTenantStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::{self, Waiter};
use super::front::Front;
use super::health::Health;
use super::wait;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::{say, shutdown_signal};

/// The services the API waits for at start.
struct Services {
    tenants: PgTenantStore,
    store: Arc<RedisJobStore>,
    queue: Arc<AmqpQueue>,
}

async fn connect_services(waiter: Waiter<'_>, config: &Config) -> anyhow::Result<Services> {
    let tenants = waiter.postgres().await?;
    let store = waiter.redis(config, 8).await?;
    match waiter.rabbitmq(config).await {
        Ok(queue) => Ok(Services {
            tenants,
            store,
            queue,
        }),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

pub async fn run(listen: SocketAddr, config: ConfigArg, conn: Connections) -> anyhow::Result<()> {
    let config = Arc::new(connect::load_config(&config)?);
    let shutdown = shutdown_signal();
    let tasks = TaskTracker::new();
    let socket = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = socket.local_addr()?;
    let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
    let front = Front::new(Arc::new(Health::default()), Arc::clone(&metrics));
    let server = {
        let (app, stop) = (front.router(), shutdown.clone());
        tasks.spawn(async move {
            axum::serve(socket, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    say(&format!("sluice api starting; its health at http://{addr}"));
    let waiter = Waiter {
        conn: &conn,
        health: &front.health,
        stop: &shutdown,
    };
    let services = connect_services(waiter, &config).await;
    let outcome = match &services {
        Ok(services) => serve(services, config, metrics, &front, addr, &shutdown, &tasks).await,
        Err(_) => Ok(()),
    };
    // Shutdown (SIGTERM, or a start-up that ended): the server stops
    // accepting and finishes the requests in flight (long-polls answer at
    // once); then every task stops and the connections close.
    shutdown.cancel();
    let served = server.await;
    // The API's router holds its state, whose background tasks (the
    // group commit) end when the state is dropped.
    drop(front);
    tasks.close();
    tasks.wait().await;
    let services = match services {
        Ok(services) => services,
        Err(e) if e.is::<wait::Stopped>() => {
            tracing::info!("api stopped while starting");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    services.queue.close().await;
    services.store.close().await;
    outcome?;
    served.context("the API server task failed")??;
    tracing::info!("api stopped");
    Ok(())
}

/// Serves the API on `front` until `shutdown`.
async fn serve(
    services: &Services,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    front: &Front,
    addr: SocketAddr,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    let Services {
        tenants,
        store,
        queue,
    } = services;
    let pool = tenants.pool().clone();
    // The semantic cache embeds prompts through the config's routes, on
    // the providers' fleet-wide budgets.
    let embedder = match &config.cache.semantic.model {
        Some(_) => {
            let budget: Arc<dyn sluice_core::budget::RateBudget> = Arc::new(store.budget());
            let router = sluice_providers::Router::from_config(
                &config,
                Arc::clone(&metrics),
                Some(budget),
                sluice_providers::CallHooks::default(),
            )?;
            Some(Arc::new(router))
        }
        None => None,
    };
    let loading = std::time::Instant::now();
    let lexicon = sluice_api::cache::lexicon::Lexicon::configured(&config.cache.semantic)?;
    if let Some(lexicon) = &lexicon {
        tracing::info!(
            lemmas = lexicon.lemmas(),
            took_ms = loading.elapsed().as_millis(),
            "loaded the semantic cache's lexicon"
        );
    }
    let listener = store
        .subscribe()
        .await
        .context("cannot subscribe to job completions")?;
    tasks.spawn(listener.run(shutdown.clone()));

    let files: Arc<dyn sluice_store::files::FileStore> =
        Arc::new(sluice_store::files::PgFileStore::new(pool.clone()));
    tasks.spawn(sluice_api::retention::sweep_files(
        Arc::clone(&files),
        shutdown.clone(),
    ));
    let backends = sluice_api::Backends {
        config,
        queue: queue.clone(),
        store: store.clone(),
        tenants: Arc::new(tenants.clone()),
        metrics,
        limiter: Arc::new(store.budget()),
        usage: Arc::new(sluice_store::usage::PgLedger::new(pool.clone())),
        cache: Arc::new(store.cache()),
        embedder,
        lexicon,
        webhooks: Arc::new(sluice_store::webhooks::PgWebhookStore::new(pool.clone())),
        events: queue.clone(),
        webhook_queue: queue.clone(),
        files: Arc::clone(&files),
        batches: Arc::new(sluice_store::batches::PgBatchStore::new(pool.clone())),
    };
    let state = AppState::new(backends, tasks).with_shutdown(shutdown.clone());
    tasks.spawn(sluice_api::batches::drive(state.clone(), shutdown.clone()));
    front.open(sluice_api::router(state));
    say(&format!("sluice api listening on http://{addr}"));
    shutdown.cancelled().await;
    Ok(())
}
