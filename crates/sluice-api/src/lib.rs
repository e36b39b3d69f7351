//! The API role: a thin HTTP front that checks the caller's key and the
//! job, stores the job's record, publishes it with a confirmed publish,
//! and answers reads (and long-polls) from the job store.
//!
//! The map: [`routes`] parse requests and answer; every submission goes
//! through the [`submission`] pipeline (its module docs list the stages in
//! order); [`ingest`] writes records and publishes in groups; [`read`]
//! reads jobs back (and long-polls); [`state`] is what they all share.
//!
//! Invariants: a 202 means the broker confirmed the job; one tenant never
//! sees another's jobs (404); every error is problem+json.

pub mod batches;
pub mod cache;
pub mod caches;
pub mod extract;
pub mod ingest;
pub mod problem;
pub mod read;
pub mod retention;
pub mod routes;
pub mod sse;
pub mod state;
pub mod submission;
pub mod trace;
pub mod view;

use std::future::Future;

pub use routes::{router, usage};
pub use state::{AppState, Backends, Shared};

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
