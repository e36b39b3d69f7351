//! What the roles that serve no API of their own (worker, webhooks) start
//! with and stop with: the config, the metrics and health endpoint (served
//! on `--metrics-listen` from the start, see [`super::health`]),
//! PostgreSQL (waited for, migrated), the shutdown signal and the tasks
//! that must be drained.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_store::tenants::PgTenantStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::{self, Waiter};
use super::health::Health;
use crate::cli::{ConfigArg, Connections};
use crate::runtime::{say, shutdown_signal};

pub struct Background {
    /// `worker` or `webhooks`.
    pub role: &'static str,
    pub config: Config,
    pub tenants: PgTenantStore,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Cancelled on SIGTERM (or Ctrl-C), and by [`Background::stop`].
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub listening: Option<SocketAddr>,
}

impl Background {
    /// Loads the config, serves the metrics and health endpoint on
    /// `listen`, and waits for PostgreSQL (refusing an unmigrated
    /// database). A signal while it waits is [`super::wait::Stopped`].
    pub async fn start(
        role: &'static str,
        listen: Option<SocketAddr>,
        config: &ConfigArg,
        conn: &Connections,
    ) -> anyhow::Result<Self> {
        let config = connect::load_config(config)?;
        let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
        let health = Arc::new(Health::default());
        let (shutdown, tasks) = (shutdown_signal(), TaskTracker::new());
        let listening = match listen {
            Some(addr) => {
                let (metrics, stop) = (Arc::clone(&metrics), shutdown.clone());
                let served = super::metrics_endpoint::serve(addr, metrics, &health, stop, &tasks);
                let addr = served.await?;
                say(&format!(
                    "sluice {role} starting; its health and metrics at http://{addr}"
                ));
                Some(addr)
            }
            None => None,
        };
        let waiter = Waiter {
            conn,
            health: &health,
            stop: &shutdown,
        };
        let tenants = waiter.postgres().await;
        let tenants = match tenants {
            Ok(tenants) => tenants,
            Err(e) => {
                shutdown.cancel();
                tasks.close();
                tasks.wait().await;
                return Err(e);
            }
        };
        Ok(Self {
            role,
            config,
            tenants,
            metrics,
            health,
            shutdown,
            tasks,
            listening,
        })
    }

    /// Waits for the other services.
    pub fn waiter<'a>(&'a self, conn: &'a Connections) -> Waiter<'a> {
        Waiter {
            conn,
            health: &self.health,
            stop: &self.shutdown,
        }
    }

    /// Says the role is up: its metrics address (what tests and
    /// operators wait for), and readiness from `checks` from now on.
    pub fn up(&self, checks: super::health::Checks) {
        self.health.running(checks);
        if let Some(addr) = self.listening {
            say(&format!("sluice {} metrics on http://{addr}", self.role));
        }
    }

    /// Stops every task the role started and waits for them.
    pub async fn stop(&self) {
        self.health.stopped();
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
