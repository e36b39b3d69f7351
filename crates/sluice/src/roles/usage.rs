//! `sluice admin usage`: the ledger, for operators, across tenants.

use anyhow::Context;
use chrono::Utc;
use sluice_api::usage::{month_start, parse_time, total};
use sluice_store::tenants::{PgTenantStore, TenantStore};
use sluice_store::usage::{GroupBy, PgLedger, UsageLedger, UsageLine, UsageQuery};

use crate::cli::{UsageArgs, UsageFormat};
use crate::runtime::say;

pub async fn run(store: &PgTenantStore, args: UsageArgs) -> anyhow::Result<()> {
    let tenant_id = match &args.tenant {
        Some(name) => Some(
            store
                .tenant_by_name(name)
                .await?
                .with_context(|| format!("no tenant named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let now = Utc::now();
    let from = args
        .from
        .as_deref()
        .map(|f| parse_time(f, "from"))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let to = args
        .to
        .as_deref()
        .map(|t| parse_time(t, "to"))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (from, to) = (from.unwrap_or_else(|| month_start(now)), to.unwrap_or(now));
    anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
    let group_by = GroupBy::parse_list(&args.group_by).map_err(anyhow::Error::msg)?;
    let query = UsageQuery {
        tenant_id,
        from,
        to,
        group_by: group_by.clone(),
    };
    let lines = PgLedger::new(store.pool().clone()).report(&query).await?;
    let names: Vec<&str> = group_by.iter().map(|g| g.as_str()).collect();
    match args.format {
        UsageFormat::Json => say(&serde_json::to_string_pretty(&serde_json::json!({
            "from": from, "to": to, "group_by": names, "data": lines, "total": total(&lines),
        }))?),
        UsageFormat::Csv => {
            let mut header: Vec<&str> = names.clone();
            header.extend(NUMBERS);
            say(&header.join(","));
            for line in &lines {
                say(&row(line, &names)
                    .iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","));
            }
        }
        UsageFormat::Table => {
            let mut header: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            header.extend(NUMBERS.iter().map(|n| (*n).to_owned()));
            let mut rows: Vec<Vec<String>> = lines.iter().map(|l| row(l, &names)).collect();
            let mut total_row = row(&total(&lines), &names);
            if let Some(first) = total_row.first_mut() {
                *first = "TOTAL".into();
            } else {
                total_row.insert(0, "TOTAL".into());
                header.insert(0, String::new());
                for r in &mut rows {
                    r.insert(0, String::new());
                }
            }
            rows.push(total_row);
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let fmt = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            say(&fmt(&header));
            for r in &rows {
                say(&fmt(r));
            }
        }
    }
    Ok(())
}

const NUMBERS: [&str; 8] = [
    "jobs",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_micros",
    "saved_micros",
    "repeated_calls",
    "estimated_micros",
];

fn row(line: &UsageLine, names: &[&str]) -> Vec<String> {
    let mut cells: Vec<String> = names
        .iter()
        .map(|n| {
            line.group
                .get(*n)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "-".into())
        })
        .collect();
    cells.extend(
        [
            line.jobs,
            line.prompt_tokens,
            line.cached_tokens,
            line.completion_tokens,
            line.cost_micros,
            line.saved_micros,
            line.repeated_calls,
            line.estimated_micros,
        ]
        .map(|n| n.to_string()),
    );
    cells
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}
