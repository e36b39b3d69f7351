//! `sluice-bench ledger`: usage reports over a large ledger. Fills a
//! database of its own with generated rows (spread over tenants, models,
//! features, routes and a month), then times the reports Sluice serves.

use std::time::Instant;

use clap::Args;
use sluice_store::usage::{GroupBy, PgLedger, UsageLedger, UsageQuery};
use sluice_testkit::Database;

use crate::cli::Connections;
use crate::progress::{self, Size};

#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// Rows in the ledger.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Tenants the rows are spread over.
    #[arg(long, default_value_t = 100)]
    pub tenants: u64,
    /// Runs of each report (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[command(flatten)]
    pub conn: Connections,
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let name = format!(
        "sluice_bench_ledger_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let database = Database::create(&crate::cli::services(&args.conn), &name).await;
    let outcome = measure(&args, &database).await;
    drop(database);
    crate::say(&outcome?);
    Ok(())
}

async fn measure(args: &LedgerArgs, database: &Database) -> anyhow::Result<String> {
    let pool = database.migrated().await;
    let filling = progress::phase(
        format!(
            "generating {} ledger rows over {} tenants",
            args.rows, args.tenants
        ),
        Size::Unknown,
    );
    let started = Instant::now();
    // Tenant ids are md5-derived uuids, so a tenant's rows can be named.
    sqlx::query(
        "INSERT INTO usage_ledger (job_id, tenant_id, model, provider, endpoint, feature, route, status, \
         prompt_tokens, cached_tokens, completion_tokens, cost_micros, finished_at) \
         SELECT 'bench-' || g, md5('tenant-' || (g % $2))::uuid, 'model-' || (g / 7 % 5), \
                'provider-' || (g / 3 % 2), '/v1/chat/completions', 'feature-' || (g / 11 % 10), \
                'route-' || (g / 13 % 5), 'succeeded', 1000 + g % 500, g % 300, 200 + g % 100, 1500 + g % 1000, \
                timestamptz '2026-10-01 00:00:00+00' + (g * 7919 % 2592000) * interval '1 second' \
         FROM generate_series(1, $1) AS g",
    )
    .bind(i64::try_from(args.rows)?)
    .bind(i64::try_from(args.tenants)?)
    .execute(&pool)
    .await?;
    // What the ledger insert keeps in step, built here in one go.
    sqlx::query(
        "INSERT INTO usage_daily (tenant_id, day, model, provider, feature, route, jobs, prompt_tokens, \
         cached_tokens, completion_tokens, cost_micros, saved_micros) \
         SELECT tenant_id, (finished_at AT TIME ZONE 'UTC')::date, model, coalesce(provider, ''), \
         coalesce(feature, ''), coalesce(route, ''), count(*), sum(prompt_tokens), sum(cached_tokens), \
         sum(completion_tokens), sum(cost_micros), sum(saved_micros) FROM usage_ledger GROUP BY 1, 2, 3, 4, 5, 6",
    )
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE usage_ledger")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE usage_daily")
        .execute(&pool)
        .await?;
    let fill_s = started.elapsed().as_secs_f64();
    filling.done();
    let ledger = PgLedger::new(pool.clone());
    let tenant: (String,) = sqlx::query_as("SELECT md5('tenant-7')::uuid::text")
        .fetch_one(&pool)
        .await?;
    let month = |t: Option<String>, g: &[GroupBy]| UsageQuery {
        tenant_id: t,
        from: chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default(),
        to: chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default(),
        group_by: g.to_vec(),
    };
    let all = [
        GroupBy::Model,
        GroupBy::Feature,
        GroupBy::Route,
        GroupBy::Day,
    ];
    let mut part = month(None, &[GroupBy::Tenant]);
    part.to -= chrono::Duration::seconds(1);
    let cases = [
        (
            "one tenant's month, by model, feature, route, day (API)",
            month(Some(tenant.0.clone()), &all),
        ),
        (
            "one tenant's month, total (API)",
            month(Some(tenant.0.clone()), &[]),
        ),
        (
            "every tenant's month, by tenant (operator)",
            month(None, &[GroupBy::Tenant]),
        ),
        (
            "every tenant, a range not on day boundaries (reads the ledger itself)",
            part,
        ),
    ];
    let mut out = format!(
        "ledger of {} rows over {} tenants (filled in {fill_s:.0} s)\n\n| report | groups | median | max |\n|---|---|---|---|\n",
        args.rows, args.tenants
    );
    let reports = progress::phase(
        format!("{} runs of each report", args.runs.max(1)),
        Size::Items((cases.len() * args.runs.max(1)) as u64),
    );
    for (name, query) in cases {
        let mut times = Vec::new();
        let mut groups = 0;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            groups = ledger.report(&query).await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            reports.inc(1);
        }
        times.sort_by(f64::total_cmp);
        out.push_str(&format!(
            "| {name} | {groups} | {:.0} ms | {:.0} ms |\n",
            times[times.len() / 2],
            times[times.len() - 1]
        ));
    }
    reports.done();
    Ok(out)
}
