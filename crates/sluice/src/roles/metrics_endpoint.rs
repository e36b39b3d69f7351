//! The `/metrics`, `/healthz` and `/readyz` endpoint of roles that serve
//! no API of their own (worker, webhooks), on `--metrics-listen`. It
//! answers from the role's first moment: while the role waits for its
//! services, `/healthz` is 200 and `/readyz` 503 ([`super::health`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use sluice_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health::Health;

/// Binds `addr` and serves `metrics` and `health` on `tasks` until
/// `stop`; the address bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: &Arc<Health>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = socket.local_addr()?;
    let app = health
        .routes()
        .route("/metrics", get(move || async move { metrics.render() }));
    tasks.spawn(async move {
        let _ = axum::serve(socket, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(bound)
}
