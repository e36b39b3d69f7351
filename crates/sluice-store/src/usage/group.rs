//! Group commit for ledger rows (see [`crate::group`]): concurrent
//! `record` calls (a worker's batches in flight) are written by one insert.
//! Each caller still hears back only after its own rows are in (or the
//! insert failed), so a worker acks no job whose row is not written.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::ledger::LedgerRow;
use tokio_util::task::TaskTracker;

use super::{UsageLedger, UsageLine, UsageQuery};
use crate::group::GroupCommit;
use crate::StoreError;

/// Most rows in one insert (calls past it wait for the next one).
const MAX_ROWS: usize = 1000;

/// A [`UsageLedger`] whose `record` calls are grouped; reports go straight
/// to the inner ledger. The writer stops once every clone is dropped,
/// after it wrote what it holds.
#[derive(Clone)]
pub struct GroupCommitLedger {
    inner: Arc<dyn UsageLedger>,
    rows: GroupCommit<LedgerRow>,
}

impl GroupCommitLedger {
    /// Starts the writer on `tasks`.
    pub fn start(inner: Arc<dyn UsageLedger>, tasks: &TaskTracker) -> Self {
        let ledger = Arc::clone(&inner);
        let rows = GroupCommit::start("ledger", MAX_ROWS, tasks, move |rows: Vec<LedgerRow>| {
            let ledger = Arc::clone(&ledger);
            async move { ledger.record(&rows).await }
        });
        Self { inner, rows }
    }
}

#[async_trait]
impl UsageLedger for GroupCommitLedger {
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError> {
        self.rows.submit(rows.to_vec()).await
    }

    async fn report(&self, query: &UsageQuery) -> Result<Vec<UsageLine>, StoreError> {
        self.inner.report(query).await
    }

    async fn spend(&self, tenant_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        self.inner.spend(tenant_id, month).await
    }

    async fn key_spend(&self, key_id: &str, month: chrono::NaiveDate) -> Result<u64, StoreError> {
        self.inner.key_spend(key_id, month).await
    }

    async fn batch_usage(&self, tenant_id: &str, batch_id: &str) -> Result<UsageLine, StoreError> {
        self.inner.batch_usage(tenant_id, batch_id).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::*;
    use crate::usage::MemoryLedger;

    fn row() -> LedgerRow {
        let call = sluice_core::ledger::Call {
            id: sluice_core::JobId::new(),
            tenant_id: "t".into(),
            key_id: None,
            model: "m".into(),
            provider: "p".into(),
            endpoint: sluice_core::Endpoint::Completions,
            metadata: Default::default(),
            usage: Default::default(),
            cost_micros: 1,
        };
        LedgerRow::for_call(call, chrono::Utc::now())
    }

    #[tokio::test]
    async fn concurrent_calls_are_all_recorded_and_each_answered() {
        let inner = Arc::new(MemoryLedger::default());
        let tasks = TaskTracker::new();
        let ledger = GroupCommitLedger::start(inner.clone(), &tasks);
        let calls = (0..20).map(|_| {
            let ledger = ledger.clone();
            async move { ledger.record(&[row(), row()]).await }
        });
        for outcome in futures::future::join_all(calls).await {
            outcome.unwrap();
        }
        // Every row once: each costs 1 µ$.
        let month = chrono::Utc::now().date_naive().with_day(1).unwrap();
        assert_eq!(inner.spend("t", month).await.unwrap(), 40);
        drop(ledger);
        tasks.close();
        tasks.wait().await;
    }
}
