//! `sluice admin reconcile`: what the ledger charged for one provider's
//! calls on a UTC day (every tenant; exact and estimated parts), against
//! what the provider says it billed that day (its Costs API), by the model
//! name the provider bills. The difference is what Sluice cannot trace:
//! calls it did not record, estimates that missed, or rows that finished on
//! the other side of midnight from the call.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{Duration, NaiveDate, Utc};
use sluice_core::config::Config;
use sluice_store::tenants::PgTenantStore;
use sluice_store::usage::{GroupBy, PgLedger, UsageLedger, UsageQuery};

use super::connect::load_config;
use crate::cli::ReconcileArgs;
use crate::runtime::say;

/// What the ledger charged for a billed model: exact and estimated µ$.
#[derive(Default)]
struct Charged {
    exact: u64,
    estimated: u64,
}

pub async fn run(store: &PgTenantStore, args: ReconcileArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let provider = config.provider(&args.provider).with_context(|| {
        format!(
            "no provider named {:?} in the config (it has: {})",
            args.provider,
            config
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let day = match &args.day {
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("--day must be YYYY-MM-DD (got {text:?})"))?,
        None => Utc::now().date_naive(),
    };
    let key_env = args.key_env.as_ref().or(provider.api_key_env.as_ref());
    let key = match key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("{var} is not set"))?),
        None => None,
    };
    let charged = ledger_charges(store, &config, &args.provider, day).await?;
    let billed =
        sluice_providers::costs::billed_on(provider.base_url.as_str(), key.as_deref(), day).await?;

    say(&format!("provider {} on {day} (UTC), µ$", args.provider));
    say(&format!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "model", "exact", "estimated", "ledger", "billed", "difference"
    ));
    let models: std::collections::BTreeSet<&String> = charged.keys().chain(billed.keys()).collect();
    let (mut ledger_total, mut billed_total) = (0i128, 0i128);
    for model in models {
        let c = charged.get(model);
        let (exact, estimated) = c.map_or((0, 0), |c| (c.exact, c.estimated));
        let bill = billed.get(model).copied().unwrap_or(0);
        let ledger = exact + estimated;
        ledger_total += i128::from(ledger);
        billed_total += i128::from(bill);
        say(&format!(
            "{model:<24} {exact:>12} {estimated:>12} {ledger:>12} {bill:>12} {:>12}",
            i128::from(ledger) - i128::from(bill)
        ));
    }
    let difference = ledger_total - billed_total;
    let percent = if billed_total == 0 {
        0.0
    } else {
        difference as f64 * 100.0 / billed_total as f64
    };
    say(&format!(
        "total: ledger {ledger_total}, billed {billed_total}, difference {difference} ({percent:+.2}%)"
    ));
    Ok(())
}

/// The ledger's charges for `provider` on `day`, every tenant, by the
/// model name the provider bills (a route's `upstream_model`).
async fn ledger_charges(
    store: &PgTenantStore,
    config: &Config,
    provider: &str,
    day: NaiveDate,
) -> anyhow::Result<BTreeMap<String, Charged>> {
    let from = day
        .and_hms_opt(0, 0, 0)
        .context("a day has a midnight")?
        .and_utc();
    let lines = PgLedger::new(store.pool().clone())
        .report(&UsageQuery {
            tenant_id: None,
            from,
            to: from + Duration::days(1),
            group_by: vec![GroupBy::Provider, GroupBy::Model],
        })
        .await?;
    let mut charged: BTreeMap<String, Charged> = BTreeMap::new();
    for line in lines {
        let group = |name: &str| line.group.get(name).cloned().flatten();
        if group("provider").as_deref() != Some(provider) {
            continue;
        }
        let model = group("model").unwrap_or_default();
        let billed_as = config
            .route(&model)
            .and_then(|r| r.upstream_model.clone())
            .unwrap_or(model);
        let entry = charged.entry(billed_as).or_default();
        entry.exact += line.cost_micros;
        entry.estimated += line.estimated_micros;
    }
    Ok(charged)
}
