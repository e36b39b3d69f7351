//! `sluice worker`: consume, batch, call, store, ack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::metrics::Metrics;
use sluice_providers::Router;
use sluice_queue::JobQueue;
use sluice_store::usage::{GroupCommitLedger, PgLedger};
use sluice_worker::Worker;
use tokio_util::task::TaskTracker;

use super::connect;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::{say, shutdown_signal};

pub async fn run(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    let config = connect::load_config(&config)?;
    // The worker writes the usage ledger; it refuses an unmigrated database.
    let tenants = connect::postgres(&conn).await?;
    let tasks = TaskTracker::new();
    // Concurrent batches' rows go in one insert.
    let ledger = Arc::new(GroupCommitLedger::start(
        Arc::new(PgLedger::new(tenants.pool().clone())),
        &tasks,
    ));
    let store = connect::redis(&conn, &config, 4).await?;
    let queue = connect::rabbitmq(&conn, &config).await?;
    let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
    let budget: Arc<dyn sluice_core::budget::RateBudget> = Arc::new(store.budget());
    let router = Router::from_config(&config, Arc::clone(&metrics), Some(budget))
        .map_err(anyhow::Error::msg)?;
    let shutdown = shutdown_signal();

    if let Some(addr) = metrics_listen {
        let metrics = Arc::clone(&metrics);
        super::metrics_endpoint::serve("worker", addr, metrics, shutdown.clone(), &tasks).await?;
    }
    {
        let queue: Arc<dyn JobQueue> = queue.clone();
        let (metrics, stop) = (Arc::clone(&metrics), shutdown.clone());
        tasks.spawn(sluice_worker::depth::poll(queue, metrics, stop));
    }
    say("sluice worker consuming");
    let worker = Worker {
        queue: queue.clone(),
        store: store.clone(),
        router: Arc::new(router),
        ledger,
        metrics,
        config: config.worker.clone(),
        cache: Arc::new(store.cache()),
        events: queue.clone(),
    }
    .run(shutdown.clone());
    // The drain is bounded: past `drain_timeout_s` the connection closes
    // and whatever is still unacked goes back to the queue.
    let drain = Duration::from_secs(config.worker.drain_timeout_s);
    let overdue = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        () = worker => {}
        () = overdue => tracing::warn!(
            drain_timeout_s = drain.as_secs(),
            "drain not done in time; closing: unacked jobs go back to the queue"
        ),
    }
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    queue.close().await;
    store.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
