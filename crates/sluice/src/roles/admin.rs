//! `sluice migrate` and `sluice admin …`.

use sluice_store::batches::{BatchStore, PgBatchStore};
use sluice_store::provider_batches::{PgProviderBatchStore, ProviderBatchStore};
use sluice_store::tenants::{self, PgTenantStore, TenantStore};
use sluice_store::usage::{PgLedger, UsageLedger};

use super::connect::redact;
use crate::cli::{AdminCommand, Connections, KeyCommand, TenantCommand};
use crate::runtime::say;

pub async fn migrate(conn: Connections) -> anyhow::Result<()> {
    let pool = super::connect::pg_pool(&conn).await?;
    tenants::migrate(&pool).await?;
    say(&format!(
        "database {} is migrated",
        redact(&conn.services.database_url)
    ));
    Ok(())
}

pub async fn run(command: AdminCommand, conn: Connections) -> anyhow::Result<()> {
    let store = super::connect::postgres(&conn).await?;
    match command {
        AdminCommand::Usage(args) => super::usage::run(&store, args).await?,
        AdminCommand::Reconcile(args) => super::reconcile::run(&store, args).await?,
        AdminCommand::Webhook { command } => super::webhooks::admin(&store, command).await?,
        AdminCommand::Batches {
            tenant: Some(tenant),
            limit,
            ..
        } => tenant_batches(&store, &tenant, limit).await?,
        AdminCommand::Batches { all, limit, .. } => batches(&store, all, limit).await?,
        AdminCommand::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let tenant = store.create_tenant(&name).await?;
            say(&format!("created tenant {} ({})", tenant.name, tenant.id));
        }
        AdminCommand::Tenant {
            command:
                TenantCommand::Limits {
                    name,
                    requests_per_minute,
                    tokens_per_minute,
                    batch_queue_tokens,
                },
        } => {
            let limits = [requests_per_minute, tokens_per_minute, batch_queue_tokens];
            if limits.contains(&Some(0)) {
                anyhow::bail!("limits must be above 0; leave a limit out to remove it");
            }
            store
                .set_limits(&name, requests_per_minute, tokens_per_minute)
                .await?;
            store
                .set_batch_queue_tokens(&name, batch_queue_tokens)
                .await?;
            let show = |v: Option<u64>| v.map_or("the default".to_owned(), |v| v.to_string());
            say(&format!(
                "tenant {name}: {} jobs/min, {} tokens/min, {} tokens queued in batches",
                show(requests_per_minute),
                show(tokens_per_minute),
                show(batch_queue_tokens)
            ));
        }
        AdminCommand::Tenant {
            command: TenantCommand::Weight { name, weight },
        } => {
            store.set_tenant_weight(&name, weight).await?;
            say(&match weight {
                Some(w) => format!("tenant {name}: fair-share weight {w}"),
                None => format!("tenant {name}: fair-share weight 1 (the default)"),
            });
        }
        AdminCommand::Tenant {
            command:
                TenantCommand::Budget {
                    name,
                    monthly_micros,
                },
        } => {
            store.set_budget(&name, monthly_micros).await?;
            say(&match monthly_micros {
                Some(cap) => format!("tenant {name}: monthly budget {cap} micro-dollars"),
                None => format!("tenant {name}: no monthly budget"),
            });
        }
        AdminCommand::Key {
            command:
                KeyCommand::Create {
                    tenant,
                    name,
                    expires_in_days,
                    priority,
                    max_inflight,
                },
        } => {
            let settings = KeySettings {
                expires_in_days,
                priority,
                max_inflight,
            };
            create_key(&store, &tenant, &name, settings).await?
        }
        AdminCommand::Key {
            command: KeyCommand::MaxInflight { id, max_inflight },
        } => {
            store.set_key_max_inflight(&id, max_inflight).await?;
            say(&in_flight(&id, max_inflight));
        }
        AdminCommand::Key {
            command: KeyCommand::Priority { id, priority },
        } => {
            store.set_key_priority(&id, priority).await?;
            let class = priority.unwrap_or_default();
            say(&format!("key {id}: jobs that name no priority are {class}"));
        }
        AdminCommand::Key {
            command: KeyCommand::Budget { id, monthly_micros },
        } => {
            store.set_key_budget(&id, monthly_micros).await?;
            say(&match monthly_micros {
                Some(cap) => format!("key {id}: monthly budget {cap} micro-dollars"),
                None => format!("key {id}: no monthly budget of its own"),
            });
        }
        AdminCommand::Key {
            command: KeyCommand::Revoke { id },
        } => {
            store.revoke_key(&id).await?;
            say(&format!("revoked key {id}"));
        }
        AdminCommand::Key {
            command: KeyCommand::List { tenant },
        } => {
            for (key, revoked) in store.list_keys(&tenant).await? {
                say(&format!(
                    "{}  {:<16} {}…  created {}{}",
                    key.id,
                    key.name,
                    key.display_prefix,
                    key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    if revoked { "  REVOKED" } else { "" }
                ));
            }
        }
    }
    Ok(())
}

/// What `sluice admin key create` sets on a new key besides its name.
struct KeySettings {
    expires_in_days: Option<u32>,
    priority: Option<sluice_core::Priority>,
    max_inflight: Option<u32>,
}

/// What a key's in-flight cap now is, in words.
fn in_flight(key_id: &str, max_inflight: Option<u32>) -> String {
    match max_inflight {
        Some(n) => format!("key {key_id}: at most {n} jobs in flight; the rest wait in the queue"),
        None => format!("key {key_id}: no cap on jobs in flight of its own"),
    }
}

async fn create_key(
    store: &PgTenantStore,
    tenant: &str,
    name: &str,
    settings: KeySettings,
) -> anyhow::Result<()> {
    let KeySettings {
        expires_in_days,
        priority,
        max_inflight,
    } = settings;
    let key = store.create_key(tenant, name).await?;
    if let Some(p) = priority {
        store.set_key_priority(&key.record.id, Some(p)).await?;
        say(&format!("the key's jobs that name no priority are {p}"));
    }
    if let Some(n) = max_inflight {
        store.set_key_max_inflight(&key.record.id, Some(n)).await?;
        say(&in_flight(&key.record.id, Some(n)));
    }
    if let Some(days) = expires_in_days {
        let at = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
        store.set_key_expiry(&key.record.id, Some(at)).await?;
        say(&format!(
            "the key expires at {}",
            at.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    say(&format!(
        "created key {:?} (id {}, {}…) for tenant {tenant}; it is shown once, below:",
        key.record.name, key.record.id, key.record.display_prefix
    ));
    say(&key.key);
    Ok(())
}

/// `sluice admin batches`: one line per provider batch, newest first.
async fn batches(store: &PgTenantStore, all: bool, limit: usize) -> anyhow::Result<()> {
    let batches = PgProviderBatchStore::new(store.pool().clone());
    let listed = batches.list(all, limit).await?;
    if listed.is_empty() {
        say(if all {
            "no provider batches"
        } else {
            "no provider batches in progress (--all shows the done ones)"
        });
        return Ok(());
    }
    say(&format!(
        "{:<26}  {:<12}  {:<20}  {:<11}  {:<30}  {:>6}  {:>5}  {:<20}  HEDGE AT",
        "BATCH", "PROVIDER", "MODEL", "STATE", "REMOTE", "LINES", "OPEN", "CREATED"
    ));
    for s in listed {
        let b = &s.batch;
        let state = if b.hedged {
            format!("{} (hedged)", b.state.as_str())
        } else {
            b.state.as_str().to_owned()
        };
        say(&format!(
            "{:<26}  {:<12}  {:<20}  {:<11}  {:<30}  {:>6}  {:>5}  {:<20}  {}",
            b.id,
            b.target.provider,
            b.target.model,
            state,
            b.remote_id.as_deref().unwrap_or("-"),
            b.lines,
            s.open_jobs,
            b.created_at.format("%Y-%m-%d %H:%M:%S"),
            b.hedge_at.format("%Y-%m-%d %H:%M:%S"),
        ));
    }
    Ok(())
}

/// `sluice admin batches --tenant NAME`: the tenant's Batch API batches,
/// newest first, with their counts and what their lines cost so far.
async fn tenant_batches(store: &PgTenantStore, name: &str, limit: usize) -> anyhow::Result<()> {
    let tenant = store
        .tenant_by_name(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant named {name:?}"))?;
    let batches = PgBatchStore::new(store.pool().clone());
    let ledger = PgLedger::new(store.pool().clone());
    let listed = batches.list(&tenant.id, None, limit).await?;
    if listed.is_empty() {
        say(&format!("tenant {name} has no batches"));
        return Ok(());
    }
    say(&format!(
        "{:<32}  {:<11}  {:>6}  {:>9}  {:>6}  {:>12}  {:>12}  CREATED",
        "BATCH", "STATUS", "LINES", "COMPLETED", "FAILED", "COST_MICROS", "ESTIMATED"
    ));
    for b in listed {
        let usage = ledger.batch_usage(&tenant.id, &b.id).await?;
        say(&format!(
            "{:<32}  {:<11}  {:>6}  {:>9}  {:>6}  {:>12}  {:>12}  {}",
            b.id,
            b.status.as_str(),
            b.total,
            b.completed,
            b.failed,
            usage.cost_micros,
            usage.estimated_micros,
            b.created_at.format("%Y-%m-%d %H:%M:%S"),
        ));
    }
    Ok(())
}
