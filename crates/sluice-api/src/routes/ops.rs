//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready while Redis answers. RabbitMQ is checked and reported, but a
/// broker that is down alone leaves the API ready: reads, long-polls,
/// cancels and cache hits need only Redis, and submissions answer 503
/// on their own (nothing is accepted unconfirmed). Taking every API pod
/// out of its Service at once on a broker blip would refuse those too.
#[utoipa::path(get, path = "/readyz",
    responses((status = 200, body = Object, description = "Ready: Redis answers (the checks say whether RabbitMQ does)"), (status = 503, body = Object, description = "Not ready: Redis does not answer")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (queue, store) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.queue.is_ready()),
        tokio::time::timeout(READY_TIMEOUT, state.store.ping()),
    );
    let queue = queue.unwrap_or(false);
    let store = matches!(store, Ok(Ok(())));
    let status = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if store { "ready" } else { "not ready" },
        "checks": {"rabbitmq": queue, "redis": store},
    });
    (status, Json(body)).into_response()
}

/// The Prometheus metrics, in the text format.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// This document: every route of the API, collected from the router.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    match state.openapi.get() {
        Some(doc) => Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Records each request's duration by method, route template and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
