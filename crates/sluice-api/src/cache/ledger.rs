//! Ledger rows the API writes itself: cache hits (cost 0, with what they
//! saved) and the embedding calls of semantic lookups (what the provider
//! billed). A hit is answered before its row is written: rows go to one
//! writer task that inserts them in batches, so a hit costs no database
//! round trip. On shutdown the writer inserts what it holds, then stops.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::ledger::LedgerRow;
use sluice_store::usage::UsageLedger;
use sluice_store::StoreError;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Most rows in one insert.
const MAX_ROWS: usize = 500;
/// Rows waiting for the writer; a full queue makes hits wait for it.
const QUEUE_DEPTH: usize = 8192;
/// How one insert is retried (transient errors only), and for how long
/// before its rows are given up (and logged).
const RETRY: Backoff = Backoff::exponential(Duration::from_millis(400), Duration::from_secs(4));
const RETRY_FOR: Duration = Duration::from_secs(15);

/// The sending side; dropping every clone stops the writer after it wrote
/// what it holds.
#[derive(Clone)]
pub struct RowWriter {
    tx: mpsc::Sender<LedgerRow>,
}

impl RowWriter {
    pub fn start(ledger: Arc<dyn UsageLedger>, tasks: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tasks.spawn(run(rx, ledger));
        Self { tx }
    }

    pub async fn write(&self, row: LedgerRow) {
        if self.tx.send(row).await.is_err() {
            tracing::error!("the ledger writer has stopped; a cache row is lost");
        }
    }
}

async fn run(mut rx: mpsc::Receiver<LedgerRow>, ledger: Arc<dyn UsageLedger>) {
    let mut rows = Vec::with_capacity(MAX_ROWS);
    while rx.recv_many(&mut rows, MAX_ROWS).await > 0 {
        let written = RETRY
            .retry(
                RETRY_FOR,
                || ledger.record(&rows),
                StoreError::is_transient,
                |e, wait| {
                    tracing::warn!(error = %e, rows = rows.len(), ?wait, "cannot write cache ledger rows; retrying");
                },
            )
            .await;
        if let Err(e) = written {
            let jobs: Vec<String> = rows.iter().map(|r| r.job_id.to_string()).collect();
            tracing::error!(error = %e, ?jobs, "cache ledger rows lost");
        }
        rows.clear();
    }
}
