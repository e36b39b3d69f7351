//! The usage ledger: one row per finished job (and one per repeated
//! provider call, see `sluice_core::repeat`), and reports over it.

mod group;
mod memory;
mod pg_record;
mod postgres;
pub(crate) use postgres::uuid;

use std::collections::BTreeMap;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::ledger::LedgerRow;

pub use group::GroupCommitLedger;
pub use memory::MemoryLedger;
pub use postgres::PgLedger;

use crate::StoreError;

/// What a report can group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupBy {
    Model,
    Feature,
    Route,
    Day,
    Provider,
    Tenant,
    /// How the jobs were answered: cache, realtime, flex, provider_batch.
    Tier,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Feature => "feature",
            Self::Route => "route",
            Self::Day => "day",
            Self::Provider => "provider",
            Self::Tenant => "tenant",
            Self::Tier => "tier",
        }
    }

    /// Parses a comma-separated list (`model,feature,day`).
    pub fn parse_list(text: &str) -> Result<Vec<GroupBy>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: GroupBy = part.parse()?;
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "model" => Self::Model,
            "feature" => Self::Feature,
            "route" => Self::Route,
            "day" => Self::Day,
            "provider" => Self::Provider,
            "tenant" => Self::Tenant,
            "tier" => Self::Tier,
            other => {
                return Err(format!(
                    "cannot group by {other:?}; choose from model, feature, route, day, provider, tenant, tier"
                ))
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct UsageQuery {
    /// One tenant's rows, or every tenant's (operators only).
    pub tenant_id: Option<String>,
    /// From (inclusive) to (exclusive), by finish time.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: Vec<GroupBy>,
}

/// One group of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    /// The group's key: a value per grouped field (null where unlabelled).
    pub group: BTreeMap<String, Option<String>>,
    pub jobs: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    /// The exact part of what the provider charged, µ$.
    pub cost_micros: u64,
    pub saved_micros: u64,
    /// Calls the provider billed beyond each job's own (a worker died
    /// mid-call, and the job was called again): their exact part is in
    /// `cost_micros`, the rest in `estimated_micros`.
    pub repeated_calls: u64,
    /// The estimated part of what the provider charged, µ$ (an orphaned
    /// call's completion). Budgets count it with `cost_micros`.
    pub estimated_micros: u64,
}

impl UsageLine {
    /// Adds one ledger row to the group.
    pub fn add(&mut self, row: &LedgerRow) {
        if row.attempt == 0 {
            self.jobs += 1;
        } else {
            self.repeated_calls += 1;
        }
        self.prompt_tokens += row.usage.prompt_tokens;
        self.cached_tokens += row.usage.cached_tokens;
        self.completion_tokens += row.usage.completion_tokens;
        self.cost_micros += row.cost_micros;
        self.saved_micros += row.saved_micros;
        self.estimated_micros += row.estimated_micros;
    }

    /// Adds another group's sums to this one (a report's total).
    pub fn merge(&mut self, other: &UsageLine) {
        self.jobs += other.jobs;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_micros += other.cost_micros;
        self.saved_micros += other.saved_micros;
        self.repeated_calls += other.repeated_calls;
        self.estimated_micros += other.estimated_micros;
    }
}

#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// Records rows; a row already recorded (the same job and attempt) is
    /// left as it was.
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError>;

    async fn report(&self, query: &UsageQuery) -> Result<Vec<UsageLine>, StoreError>;

    /// What the tenant spent in the month starting on `month` (UTC), µ$:
    /// exact and estimated charges alike.
    async fn spend(&self, tenant_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError>;

    /// What the key spent in the month starting on `month` (UTC), µ$.
    async fn key_spend(&self, key_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError>;

    /// The sums of the tenant's rows of one Batch API batch (the rows whose
    /// metadata carries its `batch_id`).
    async fn batch_usage(&self, tenant_id: &str, batch_id: &str) -> Result<UsageLine, StoreError>;
}
