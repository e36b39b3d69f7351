//! `sluice webhooks` (the delivery role) and `sluice admin webhook …`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::webhook::EventKind;
use sluice_queue::JobQueue;
use sluice_store::tenants::{PgTenantStore, TenantStore};
use sluice_store::webhooks::{PgWebhookStore, WebhookStore};
use sluice_webhooks::{Dispatcher, WebhookMetrics};

use super::background::Background;
use super::health::{within_timeout, Checks};
use super::wait;
use crate::cli::{ConfigArg, Connections, WebhookCommand};
use crate::runtime::say;

pub async fn run(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    wait::stopped_is_clean("webhooks", serve(metrics_listen, config, conn).await)
}

async fn serve(
    metrics_listen: Option<SocketAddr>,
    config: ConfigArg,
    conn: Connections,
) -> anyhow::Result<()> {
    let role = Background::start("webhooks", metrics_listen, &config, &conn).await?;
    let config = &role.config;
    let store = Arc::new(PgWebhookStore::new(role.tenants.pool().clone()));
    let queue = match role.waiter(&conn).rabbitmq_for_webhooks(config).await {
        Ok(queue) => queue,
        Err(e) => {
            role.stop().await;
            return Err(e);
        }
    };
    let webhook_metrics = WebhookMetrics::register(&role.metrics);
    // Ready while the broker answers (attempts are recorded in PostgreSQL,
    // which a failed write retries through the broker's redelivery).
    let checks: Checks = {
        let queue = Arc::clone(&queue);
        Arc::new(move || {
            let queue = Arc::clone(&queue);
            Box::pin(async move { vec![("rabbitmq", within_timeout(queue.is_ready()).await)] })
        })
    };
    role.up(checks);
    say("sluice webhooks delivering");
    let dispatcher = Dispatcher {
        queue: queue.clone(),
        retries: queue.clone(),
        store,
        topology: queue.topology().clone(),
        config: config.webhooks.clone(),
        metrics: webhook_metrics,
    };
    let result = dispatcher.run(role.shutdown.clone()).await;
    role.stop().await;
    queue.close().await;
    result.context("cannot build the webhook HTTP client")?;
    tracing::info!("webhooks stopped");
    Ok(())
}

fn events(list: Option<&str>) -> anyhow::Result<Vec<EventKind>> {
    let Some(list) = list else {
        return Ok(EventKind::ALL.to_vec());
    };
    list.split(',')
        .map(|e| {
            let e = e.trim();
            EventKind::ALL
                .into_iter()
                .find(|k| k.as_str() == e)
                .with_context(|| {
                    format!("unknown event {e:?}; expected succeeded, failed, canceled, expired")
                })
        })
        .collect()
}

pub async fn admin(tenants: &PgTenantStore, command: WebhookCommand) -> anyhow::Result<()> {
    let store = PgWebhookStore::new(tenants.pool().clone());
    let tenant_id = |name: String| async move {
        tenants
            .tenant_by_name(&name)
            .await?
            .map(|t| t.id)
            .with_context(|| format!("no tenant named {name:?}"))
    };
    match command {
        WebhookCommand::Secret { tenant, overlap_s } => {
            let id = tenant_id(tenant.clone()).await?;
            let secret = store
                .rotate_tenant_secret(&id, Duration::from_secs(overlap_s))
                .await?;
            say(&format!(
                "tenant {tenant}: new webhook signing secret (a replaced one signs on for {overlap_s} s); shown once, below:"
            ));
            say(secret.expose());
        }
        WebhookCommand::Create {
            tenant,
            url,
            events: list,
        } => {
            let parsed = url::Url::parse(&url).with_context(|| format!("bad URL {url:?}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("the URL must be http:// or https://");
            }
            let id = tenant_id(tenant.clone()).await?;
            let (endpoint, secret) = store
                .create_endpoint(&id, parsed.as_str(), &events(list.as_deref())?)
                .await?;
            say(&format!(
                "created endpoint {} for tenant {tenant} ({}); its secret is shown once, below:",
                endpoint.id, endpoint.url
            ));
            say(secret.expose());
        }
        WebhookCommand::List { tenant } => {
            let id = tenant_id(tenant).await?;
            for e in store.list_endpoints(&id).await? {
                let events: Vec<&str> = e.events.iter().map(|k| k.as_str()).collect();
                say(&format!(
                    "{}  {}  [{}]{}",
                    e.id,
                    e.url,
                    events.join(","),
                    e.disabled_reason
                        .map(|r| format!("  DISABLED: {r}"))
                        .unwrap_or_default()
                ));
            }
        }
        WebhookCommand::Delete { tenant, id } => {
            let tenant_id = tenant_id(tenant).await?;
            if !store.delete_endpoint(&tenant_id, &id).await? {
                anyhow::bail!("no endpoint {id} for this tenant");
            }
            say(&format!("deleted endpoint {id}"));
        }
        WebhookCommand::Rotate {
            tenant,
            id,
            overlap_s,
        } => {
            let tenant_id = tenant_id(tenant).await?;
            let secret = store
                .rotate_endpoint_secret(&tenant_id, &id, Duration::from_secs(overlap_s))
                .await?
                .with_context(|| format!("no endpoint {id} for this tenant"))?;
            say(&format!(
                "endpoint {id}: new secret (the old one signs on for {overlap_s} s); shown once, below:"
            ));
            say(secret.expose());
        }
    }
    Ok(())
}
