//! Start-up shared by the roles: the config, and each service, with an
//! error that names what failed and how to fix it. The long-running roles
//! wait for each service ([`Waiter`]); the admin commands do not.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::config::Config;
use sluice_queue::{AmqpQueue, Topology};
use sluice_store::jobs::{JobStore, RedisJobStore, RedisOptions};
use sluice_store::tenants::{self, PgTenantStore};
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::wait::{until_up, NotUp};
use crate::cli::{ConfigArg, Connections};

pub fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    let path = arg.config.as_ref().context(
        "no config file: pass --config PATH or set SLUICE_CONFIG (see config/sluice.example.toml)",
    )?;
    Ok(Config::load(path)?)
}

/// A pool to PostgreSQL, migrated or not.
pub async fn pg_pool(conn: &Connections) -> anyhow::Result<sqlx::PgPool> {
    tenants::connect(&conn.services.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}",
                redact(&conn.services.database_url)
            )
        })
}

/// PostgreSQL, checked to be migrated (for the admin commands: at once).
pub async fn postgres(conn: &Connections) -> anyhow::Result<PgTenantStore> {
    let pool = pg_pool(conn).await?;
    tenants::check_migrated(&pool).await?;
    Ok(PgTenantStore::new(pool))
}

/// A long-running role's start-up: each service waited for (see
/// [`super::wait`]), what it waits for shown by `health`, until `stop`.
#[derive(Clone, Copy)]
pub struct Waiter<'a> {
    pub conn: &'a Connections,
    pub health: &'a Health,
    pub stop: &'a CancellationToken,
}

impl Waiter<'_> {
    /// PostgreSQL, migrated: a server not up yet is waited for, a
    /// database without the schema this release needs is refused.
    pub async fn postgres(&self) -> anyhow::Result<PgTenantStore> {
        let url = &self.conn.services.database_url;
        let pool = until_up(
            "PostgreSQL",
            redact(url),
            self.health,
            self.stop,
            || async {
                let pool = tenants::connect(url).await.map_err(|e| {
                    let transient = e.is_transient();
                    NotUp::from(
                        anyhow::Error::new(e)
                            .context(format!("cannot connect to PostgreSQL at {}", redact(url))),
                        transient,
                    )
                })?;
                match tenants::check_migrated(&pool).await {
                    Ok(()) => Ok(pool),
                    Err(e) => {
                        pool.close().await;
                        let transient = e.is_transient();
                        Err(NotUp::from(e, transient))
                    }
                }
            },
        )
        .await?;
        Ok(PgTenantStore::new(pool))
    }

    /// Redis, answering commands: a server that refuses connections or
    /// replies `LOADING` (reading its append-only file) is waited for.
    pub async fn redis(
        &self,
        config: &Config,
        pool_size: usize,
    ) -> anyhow::Result<Arc<RedisJobStore>> {
        let url = &self.conn.services.redis_url;
        let store = until_up("Redis", redact(url), self.health, self.stop, || async {
            let failed = |e: sluice_store::StoreError| {
                let transient = e.is_transient();
                let e = anyhow::Error::new(e)
                    .context(format!("cannot connect to Redis at {}", redact(url)));
                NotUp::from(e, transient)
            };
            let store = RedisJobStore::connect(RedisOptions {
                url: url.clone(),
                prefix: self.conn.prefix.clone(),
                retention: Duration::from_secs(config.jobs.retention_s),
                pool_size,
            })
            .await
            .map_err(failed)?;
            // Connected is not serving: a loading server accepts the
            // connection and answers every command with `LOADING`.
            match store.ping().await {
                Ok(()) => Ok(store),
                Err(e) => {
                    store.close().await;
                    Err(failed(e))
                }
            }
        })
        .await?;
        Ok(Arc::new(store))
    }

    pub async fn rabbitmq(&self, config: &Config) -> anyhow::Result<Arc<AmqpQueue>> {
        let topology = Topology::new(self.conn.prefix.clone(), config.worker.delivery_limit)
            .with_pack_jobs(config.jobs.pack_jobs);
        self.amqp(topology).await
    }

    /// RabbitMQ for the webhooks role: it also declares the delay queues of
    /// the retry schedule (only it publishes to them).
    pub async fn rabbitmq_for_webhooks(&self, config: &Config) -> anyhow::Result<Arc<AmqpQueue>> {
        let topology = Topology::new(self.conn.prefix.clone(), config.worker.delivery_limit)
            .with_pack_jobs(config.jobs.pack_jobs)
            .with_webhook_delays(config.webhooks.delays_ms());
        self.amqp(topology).await
    }

    /// RabbitMQ, at any of the URLs of `SLUICE_AMQP_URL` (see
    /// [`AmqpQueue::connect_within`]); every failure to reach a broker may pass.
    async fn amqp(&self, topology: Topology) -> anyhow::Result<Arc<AmqpQueue>> {
        let urls = &self.conn.services.amqp_url;
        let queue = until_up("RabbitMQ", redact(urls), self.health, self.stop, || async {
            AmqpQueue::connect_within(urls, topology.clone(), AMQP_TRY)
                .await
                .map_err(|e| {
                    NotUp::Yet(
                        anyhow::Error::new(e)
                            .context(format!("cannot connect to RabbitMQ at {}", redact(urls))),
                    )
                })
        })
        .await?;
        Ok(Arc::new(queue))
    }
}

/// How long one start-up try may spend on RabbitMQ: every node of the
/// list tried (a refused connection fails at once), or one slow node
/// given its full connection timeout.
const AMQP_TRY: Duration = sluice_queue::amqp::RPC_TIMEOUT;

/// A URL (or a comma-separated list of them) without passwords, for
/// messages.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
