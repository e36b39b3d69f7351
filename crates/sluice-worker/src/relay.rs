//! The worker's chunk relay: a streaming provider call's chunks go to the
//! job's chunk log in the job store, where the API process streaming the
//! job to its caller reads them (`sluice_core::stream`). Chunks arriving
//! at the same moment, of any number of jobs, share one store call (group
//! commit); each call waits for its own, so a job's chunks stay in order.
//! A chunk that cannot be stored is logged and the call goes on: its
//! caller still gets the whole answer once the job ends.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::stream::StreamEntry;
use sluice_core::JobId;
use sluice_providers::{CallHooks, ChunkRelay};
use sluice_store::group::GroupCommit;
use sluice_store::jobs::JobStore;
use tokio_util::task::TaskTracker;

/// Most jobs' entries appended in one store call.
const MAX_LOGS: usize = 256;

#[derive(Clone)]
pub struct StoreRelay {
    logs: GroupCommit<(JobId, Vec<StreamEntry>)>,
}

impl StoreRelay {
    /// Starts the writer on `tasks`; it stops once every clone is dropped.
    pub fn start(store: Arc<dyn JobStore>, tasks: &TaskTracker) -> Self {
        let logs = GroupCommit::start("chunk relay", MAX_LOGS, tasks, move |logs: Vec<_>| {
            let store = Arc::clone(&store);
            async move { store.append_chunks(&logs).await }
        });
        Self { logs }
    }
}

#[async_trait]
impl ChunkRelay for StoreRelay {
    async fn relay(&self, job: JobId, entries: Vec<StreamEntry>) {
        let count = entries.len();
        if let Err(e) = self.logs.submit(vec![(job, entries)]).await {
            tracing::warn!(job = %job, entries = count, error = %e, "cannot relay stream chunks");
        }
    }
}

/// What a worker's providers report to: the send log (each call marked
/// sent before it leaves, and the fair gate told, if there is one) and the
/// chunk relay, both on `store`.
pub fn call_hooks(
    store: Arc<dyn JobStore>,
    gate: Option<crate::fair::Gate>,
    tasks: &TaskTracker,
) -> CallHooks {
    CallHooks {
        sent: Some(Arc::new(crate::sent::SentLog::start(
            Arc::clone(&store),
            gate,
            tasks,
        ))),
        relay: Some(Arc::new(StoreRelay::start(store, tasks))),
    }
}
