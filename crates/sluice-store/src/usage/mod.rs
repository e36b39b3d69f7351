//! The usage ledger: one row per finished job, and reports over it.

mod group;
mod memory;
mod pg_record;
mod postgres;

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
            other => {
                return Err(format!(
                    "cannot group by {other:?}; choose from model, feature, route, day, provider, tenant"
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
    pub cost_micros: u64,
    pub saved_micros: u64,
}

#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// Records rows; a job already recorded is left as it was.
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError>;

    async fn report(&self, query: &UsageQuery) -> Result<Vec<UsageLine>, StoreError>;

    /// What the tenant spent in the month starting on `month` (UTC), µ$.
    async fn spend(&self, tenant_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError>;

    /// What the key spent in the month starting on `month` (UTC), µ$.
    async fn key_spend(&self, key_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError>;
}
