//! What the roles that serve no API of their own (worker, webhooks) start
//! with and stop with: the config, PostgreSQL (migrated), the metrics
//! (served on `--metrics-listen` once connected), the shutdown signal and
//! the tasks that must be drained.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_store::tenants::PgTenantStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::shutdown_signal;

pub struct Background {
    pub config: Config,
    pub tenants: PgTenantStore,
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM (or Ctrl-C), and by [`Background::stop`].
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Background {
    /// Loads the config and connects to PostgreSQL (refusing an
    /// unmigrated database).
    pub async fn start(config: &ConfigArg, conn: &Connections) -> anyhow::Result<Self> {
        let config = connect::load_config(config)?;
        let tenants = connect::postgres(conn).await?;
        let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
        let (shutdown, tasks) = (shutdown_signal(), TaskTracker::new());
        Ok(Self {
            config,
            tenants,
            metrics,
            shutdown,
            tasks,
        })
    }

    /// Serves the metrics of `role` on `listen`, once the role has
    /// connected to everything (`/healthz` answering is its startup probe).
    pub async fn serve_metrics(
        &self,
        role: &str,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<()> {
        let Some(addr) = listen else {
            return Ok(());
        };
        let (metrics, stop) = (Arc::clone(&self.metrics), self.shutdown.clone());
        super::metrics_endpoint::serve(role, addr, metrics, stop, &self.tasks).await
    }

    /// Stops every task the role started and waits for them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
