//! `sluice worker`: consume, batch, call, store, ack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_providers::Router;
use sluice_queue::{AmqpQueue, JobQueue};
use sluice_store::jobs::{JobStore, RedisJobStore};
use sluice_store::provider_batches::PgProviderBatchStore;
use sluice_store::usage::{GroupCommitLedger, PgLedger};
use sluice_worker::provider_batch::ProviderBatches;
use sluice_worker::Worker;

use super::background::Background;
use super::health::{within_timeout, Checks};
use super::wait;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::say;

pub async fn run(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    wait::stopped_is_clean("worker", serve(metrics_listen, config, conn).await)
}

async fn serve(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    // The worker writes the usage ledger; it refuses an unmigrated database.
    let role = Background::start("worker", metrics_listen, &config, &conn).await?;
    let connected = connect_services(&role, &conn).await;
    let (store, queue) = match connected {
        Ok(both) => both,
        Err(e) => {
            role.stop().await;
            return Err(e);
        }
    };
    let Background {
        config,
        tenants,
        metrics,
        shutdown,
        tasks,
        ..
    } = &role;
    // Concurrent batches' rows go in one insert.
    let ledger = Arc::new(GroupCommitLedger::start(
        Arc::new(PgLedger::new(tenants.pool().clone())),
        tasks,
    ));
    let budget: Arc<dyn sluice_core::budget::RateBudget> = Arc::new(store.budget());
    // Each call's attempts are marked sent just before it leaves; a
    // streaming call's chunks are relayed to its job's chunk log.
    // Fair share's gate hears of each call leaving, through the send log.
    let fair = sluice_worker::fair::Fair::new(Arc::new(store.fair()), config);
    let hooks = sluice_worker::relay::call_hooks(store.clone(), Some(fair.gate.clone()), tasks);
    let router = Router::from_config(config, Arc::clone(metrics), Some(budget), hooks)?;
    {
        let queue: Arc<dyn JobQueue> = queue.clone();
        let (metrics, stop) = (Arc::clone(metrics), shutdown.clone());
        tasks.spawn(sluice_worker::depth::poll(queue, metrics, stop));
    }
    // Live while the consumers run; ready while the broker and Redis answer.
    role.up(readiness(&queue, &store));
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
        provider_batches: ProviderBatches::from_config(
            config,
            metrics,
            Arc::new(PgProviderBatchStore::new(tenants.pool().clone())),
        )?,
        fair: Some(fair),
    }
    .run(shutdown.clone());
    // The drain is bounded: past `drain_timeout_s` the connection closes
    // and whatever is still unacked goes back to the queue.
    let drain = Duration::from_secs(config.worker.drain_timeout_s);
    let overdue = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    let worker = async {
        worker.await;
        role.health.stopped();
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

async fn connect_services(
    role: &Background,
    conn: &Connections,
) -> anyhow::Result<(Arc<RedisJobStore>, Arc<AmqpQueue>)> {
    let waiter = role.waiter(conn);
    let store = waiter.redis(&role.config, 4).await?;
    match waiter.rabbitmq(&role.config).await {
        Ok(queue) => Ok((store, queue)),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

/// The worker's readiness: it can take jobs (the broker answers) and
/// store their ends (Redis answers).
fn readiness(queue: &Arc<AmqpQueue>, store: &Arc<RedisJobStore>) -> Checks {
    let (queue, store) = (Arc::clone(queue), Arc::clone(store));
    Arc::new(move || {
        let (queue, store) = (Arc::clone(&queue), Arc::clone(&store));
        Box::pin(async move {
            let broker = within_timeout(queue.is_ready());
            let redis = within_timeout(async { store.ping().await.is_ok() });
            let (broker, redis) = tokio::join!(broker, redis);
            vec![("rabbitmq", broker), ("redis", redis)]
        })
    })
}
