//! Group commit for ledger rows: concurrent `record` calls (a worker's
//! batches in flight) are written by one insert. Nothing waits for company:
//! the writer takes whatever calls are queued when it is free, so a lone
//! call is written at once. Each caller still hears back only after its
//! own rows are in (or the insert failed), so a worker acks no job whose
//! row is not written.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::ledger::LedgerRow;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::{UsageLedger, UsageLine, UsageQuery};
use crate::StoreError;

/// Most rows in one insert (calls past it wait for the next one).
const MAX_ROWS: usize = 1000;
/// Calls waiting for the writer; a full queue makes callers wait.
const QUEUE_DEPTH: usize = 256;

struct Call {
    rows: Vec<LedgerRow>,
    reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// A [`UsageLedger`] whose `record` calls are grouped; reports go straight
/// to the inner ledger. The writer stops once every clone is dropped,
/// after it wrote what it holds.
#[derive(Clone)]
pub struct GroupCommitLedger {
    inner: Arc<dyn UsageLedger>,
    tx: mpsc::Sender<Call>,
}

impl GroupCommitLedger {
    /// Starts the writer on `tasks`.
    pub fn start(inner: Arc<dyn UsageLedger>, tasks: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tasks.spawn(write(rx, Arc::clone(&inner)));
        Self { inner, tx }
    }
}

async fn write(mut rx: mpsc::Receiver<Call>, ledger: Arc<dyn UsageLedger>) {
    let mut calls: Vec<Call> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut rows = first.rows.len();
        calls.push(first);
        while rows < MAX_ROWS {
            match rx.try_recv() {
                Ok(next) => {
                    rows += next.rows.len();
                    calls.push(next);
                }
                Err(_) => break,
            }
        }
        // The rows move into one insert; the callers keep their replies.
        let all: Vec<LedgerRow> = calls
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.rows))
            .collect();
        let outcome = ledger.record(&all).await.map_err(Arc::new);
        for call in calls.drain(..) {
            let _ = call.reply.send(outcome.clone());
        }
    }
}

#[async_trait]
impl UsageLedger for GroupCommitLedger {
    async fn record(&self, rows: &[LedgerRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let call = Call {
            rows: rows.to_vec(),
            reply,
        };
        let stopped = || StoreError::Unavailable("the ledger writer has stopped".into());
        self.tx.send(call).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::Shared)
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
