//! Start-up shared by the roles: the config, and each service, with an
//! error that names what failed and how to fix it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::config::Config;
use sluice_queue::{AmqpQueue, Topology};
use sluice_store::jobs::{RedisJobStore, RedisOptions};
use sluice_store::tenants::{self, PgTenantStore};

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

/// PostgreSQL, checked to be migrated.
pub async fn postgres(conn: &Connections) -> anyhow::Result<PgTenantStore> {
    let pool = pg_pool(conn).await?;
    tenants::check_migrated(&pool).await?;
    Ok(PgTenantStore::new(pool))
}

pub async fn redis(
    conn: &Connections,
    config: &Config,
    pool_size: usize,
) -> anyhow::Result<Arc<RedisJobStore>> {
    let store = RedisJobStore::connect(RedisOptions {
        url: conn.services.redis_url.clone(),
        prefix: conn.prefix.clone(),
        retention: Duration::from_secs(config.jobs.retention_s),
        pool_size,
    })
    .await
    .with_context(|| {
        format!(
            "cannot connect to Redis at {}",
            redact(&conn.services.redis_url)
        )
    })?;
    Ok(Arc::new(store))
}

pub async fn rabbitmq(conn: &Connections, config: &Config) -> anyhow::Result<Arc<AmqpQueue>> {
    let topology = Topology::new(conn.prefix.clone(), config.worker.delivery_limit)
        .with_pack_jobs(config.jobs.pack_jobs);
    amqp(conn, topology).await
}

/// RabbitMQ for the webhooks role: it also declares the delay queues of
/// the retry schedule (only it publishes to them).
pub async fn rabbitmq_for_webhooks(
    conn: &Connections,
    config: &Config,
) -> anyhow::Result<Arc<AmqpQueue>> {
    let topology = Topology::new(conn.prefix.clone(), config.worker.delivery_limit)
        .with_pack_jobs(config.jobs.pack_jobs)
        .with_webhook_delays(config.webhooks.delays_ms());
    amqp(conn, topology).await
}

async fn amqp(conn: &Connections, topology: Topology) -> anyhow::Result<Arc<AmqpQueue>> {
    let queue = AmqpQueue::connect(&conn.services.amqp_url, topology)
        .await
        .with_context(|| {
            format!(
                "cannot connect to RabbitMQ at {}",
                redact(&conn.services.amqp_url)
            )
        })?;
    Ok(Arc::new(queue))
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
