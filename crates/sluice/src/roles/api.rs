//! `sluice api`: the HTTP front.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sluice_api::AppState;
use sluice_core::metrics::Metrics;
use sluice_queue::JobQueue;
use tokio_util::task::TaskTracker;

use super::connect;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::{say, shutdown_signal};

pub async fn run(listen: SocketAddr, config: ConfigArg, conn: Connections) -> anyhow::Result<()> {
    let config = Arc::new(connect::load_config(&config)?);
    let tenants = connect::postgres(&conn).await?;
    let pool = tenants.pool().clone();
    let store = connect::redis(&conn, &config, 8).await?;
    let queue = connect::rabbitmq(&conn, &config).await?;
    let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
    let shutdown = shutdown_signal();
    // The semantic cache embeds prompts through the config's routes, on
    // the providers' fleet-wide budgets.
    let embedder = match &config.cache.semantic.model {
        Some(_) => {
            let budget: Arc<dyn sluice_core::budget::RateBudget> = Arc::new(store.budget());
            let router = sluice_providers::Router::from_config(
                &config,
                Arc::clone(&metrics),
                Some(budget),
                None,
            )?;
            Some(Arc::new(router))
        }
        None => None,
    };

    let tasks = TaskTracker::new();
    let listener = store
        .subscribe()
        .await
        .context("cannot subscribe to job completions")?;
    tasks.spawn(listener.run(shutdown.clone()));

    let backends = sluice_api::Backends {
        config,
        queue: queue.clone(),
        store: store.clone(),
        tenants: Arc::new(tenants),
        metrics,
        limiter: Arc::new(store.budget()),
        usage: Arc::new(sluice_store::usage::PgLedger::new(pool.clone())),
        cache: Arc::new(store.cache()),
        embedder,
        webhooks: Arc::new(sluice_store::webhooks::PgWebhookStore::new(pool)),
        events: queue.clone(),
        webhook_queue: queue.clone(),
    };
    let state = AppState::new(backends, &tasks).with_shutdown(shutdown.clone());
    let socket = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = socket.local_addr()?;
    say(&format!("sluice api listening on http://{addr}"));
    let stop = shutdown.clone();
    sluice_api::serve(socket, state, async move { stop.cancelled().await }).await?;
    // Phase 2: in-flight requests are done; stop the listener, close connections.
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    queue.close().await;
    store.close().await;
    tracing::info!("api stopped");
    Ok(())
}
