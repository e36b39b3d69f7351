//! The `/metrics` and `/healthz` endpoint of roles that serve no API of
//! their own (worker, webhooks), on `--metrics-listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use sluice_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::say;

/// Binds `addr` and serves `metrics` on `tasks` until `stop`.
pub async fn serve(
    role: &str,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    say(&format!(
        "sluice {role} metrics on http://{}",
        socket.local_addr()?
    ));
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }));
    tasks.spawn(async move {
        let _ = axum::serve(socket, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(())
}
