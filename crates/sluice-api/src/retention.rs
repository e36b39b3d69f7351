//! Files past their retention (`[files] retention_s`) are deleted by a
//! sweep that every API process runs: reads already treat them as gone,
//! the sweep frees their space. Replicas sweeping at once delete the same
//! rows; the second finds nothing.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::files::FileStore;
use tokio_util::sync::CancellationToken;

/// How often expired files are deleted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Deletes expired files every [`SWEEP_EVERY`], until `stop`.
pub async fn sweep_files(files: Arc<dyn FileStore>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match files.delete_expired(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted files past their retention"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired files; trying again later"),
        }
    }
}
