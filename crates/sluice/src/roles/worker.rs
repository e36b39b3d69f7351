//! `sluice worker`: consume, batch, call, store, ack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_providers::Router;
use sluice_queue::JobQueue;
use sluice_store::usage::{GroupCommitLedger, PgLedger};
use sluice_worker::Worker;

use super::background::Background;
use super::connect;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::say;

pub async fn run(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    // The worker writes the usage ledger; it refuses an unmigrated database.
    let role = Background::start(&config, &conn).await?;
    let Background {
        config,
        tenants,
        metrics,
        shutdown,
        tasks,
    } = &role;
    // Concurrent batches' rows go in one insert.
    let ledger = Arc::new(GroupCommitLedger::start(
        Arc::new(PgLedger::new(tenants.pool().clone())),
        tasks,
    ));
    let store = connect::redis(&conn, config, 4).await?;
    let queue = connect::rabbitmq(&conn, config).await?;
    let budget: Arc<dyn sluice_core::budget::RateBudget> = Arc::new(store.budget());
    // Each call's attempts are marked sent just before it leaves.
    let sent = Arc::new(sluice_worker::sent::SentLog::start(store.clone(), tasks));
    let router = Router::from_config(config, Arc::clone(metrics), Some(budget), Some(sent))?;
    role.serve_metrics("worker", metrics_listen).await?;
    {
        let queue: Arc<dyn JobQueue> = queue.clone();
        let (metrics, stop) = (Arc::clone(metrics), shutdown.clone());
        tasks.spawn(sluice_worker::depth::poll(queue, metrics, stop));
    }
    say("sluice worker consuming");
    let worker = Worker {
        queue: queue.clone(),
        store: store.clone(),
        router: Arc::new(router),
        ledger,
        metrics: Arc::clone(metrics),
        config: config.worker.clone(),
        cache: Arc::new(store.cache()),
        events: queue.clone(),
        repeats: sluice_worker::repeats::Repeats::new(config),
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
    role.stop().await;
    queue.close().await;
    store.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
