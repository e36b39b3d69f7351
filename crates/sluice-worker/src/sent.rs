//! The worker's send log: just before a provider call leaves, its jobs'
//! current attempts are marked sent in the job store (see
//! `sluice_core::repeat`). Calls leaving at the same moment share one store
//! call (group commit), so a mark costs no round trip per job; the call
//! waits for its mark, so a call is never made unmarked while the store is
//! up. A mark that cannot be stored is logged and the call goes anyway: a
//! repeat it causes later goes unrecorded, which is rarer and cheaper than
//! failing the job.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::JobId;
use sluice_providers::SendLog;
use sluice_store::group::GroupCommit;
use sluice_store::jobs::JobStore;
use tokio_util::task::TaskTracker;

use crate::fair::Gate;

/// Most jobs marked in one store call.
const MAX_MARKS: usize = 512;

#[derive(Clone)]
pub struct SentLog {
    marks: GroupCommit<JobId>,
    /// Told when a call leaves, so its jobs no longer count as waiting.
    gate: Option<Gate>,
}

impl SentLog {
    /// Starts the writer on `tasks`; it stops once every clone is dropped.
    pub fn start(store: Arc<dyn JobStore>, gate: Option<Gate>, tasks: &TaskTracker) -> Self {
        let marks = GroupCommit::start("send log", MAX_MARKS, tasks, move |ids: Vec<JobId>| {
            let store = Arc::clone(&store);
            async move { store.mark_sent(&ids).await }
        });
        Self { marks, gate }
    }
}

#[async_trait]
impl SendLog for SentLog {
    async fn sending(&self, jobs: &[JobId]) {
        if let Err(e) = self.marks.submit(jobs.to_vec()).await {
            tracing::warn!(jobs = jobs.len(), error = %e, "cannot mark calls sent; sending anyway");
        }
        if let Some(gate) = &self.gate {
            gate.sent(jobs);
        }
    }
}
