//! The ledger in process memory (unit tests, `sluice dev`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sluice_core::ledger::LedgerRow;
use sluice_core::JobId;

use super::{GroupBy, UsageLedger, UsageLine, UsageQuery};
use crate::StoreError;

#[derive(Default)]
pub struct MemoryLedger {
    rows: Mutex<BTreeMap<(JobId, u32, u32), LedgerRow>>,
}

fn key_of(row: &LedgerRow, g: GroupBy) -> Option<String> {
    match g {
        GroupBy::Model => Some(row.model.clone()),
        GroupBy::Feature => row.label("feature"),
        GroupBy::Route => row.label("route"),
        GroupBy::Day => Some(row.finished_at.format("%Y-%m-%d").to_string()),
        GroupBy::Provider => row.provider.clone(),
        GroupBy::Tenant => Some(row.tenant_id.clone()),
        GroupBy::Tier => row.tier.map(|t| t.as_str().to_owned()),
    }
}

#[async_trait]
impl UsageLedger for MemoryLedger {
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError> {
        let mut map = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            map.entry((row.job_id, row.attempt, row.call_index))
                .or_insert_with(|| row.clone());
        }
        Ok(())
    }

    async fn spend(&self, tenant_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        let map = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let month = month.format("%Y-%m").to_string();
        Ok(map
            .values()
            .filter(|r| {
                r.tenant_id == tenant_id && r.finished_at.format("%Y-%m").to_string() == month
            })
            .map(|r| r.cost_micros + r.estimated_micros)
            .sum())
    }

    async fn key_spend(&self, key_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        let map = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let month = month.format("%Y-%m").to_string();
        Ok(map
            .values()
            .filter(|r| {
                r.key_id.as_deref() == Some(key_id)
                    && r.finished_at.format("%Y-%m").to_string() == month
            })
            .map(|r| r.cost_micros + r.estimated_micros)
            .sum())
    }

    async fn batch_usage(&self, tenant_id: &str, batch_id: &str) -> Result<UsageLine, StoreError> {
        let map = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = UsageLine::default();
        map.values()
            .filter(|r| r.tenant_id == tenant_id)
            .filter(|r| r.metadata.get("batch_id").and_then(|v| v.as_str()) == Some(batch_id))
            .for_each(|r| line.add(r));
        Ok(line)
    }

    async fn report(&self, q: &UsageQuery) -> Result<Vec<UsageLine>, StoreError> {
        let map = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut groups: BTreeMap<Vec<Option<String>>, UsageLine> = BTreeMap::new();
        let rows = map.values().filter(|r| {
            q.tenant_id.as_ref().is_none_or(|t| &r.tenant_id == t)
                && r.finished_at >= q.from
                && r.finished_at < q.to
        });
        for row in rows {
            let key: Vec<Option<String>> = q.group_by.iter().map(|g| key_of(row, *g)).collect();
            let line = groups.entry(key.clone()).or_insert_with(|| UsageLine {
                group: q
                    .group_by
                    .iter()
                    .map(|g| g.as_str().to_owned())
                    .zip(key)
                    .collect(),
                ..UsageLine::default()
            });
            line.add(row);
        }
        Ok(groups.into_values().collect())
    }
}
