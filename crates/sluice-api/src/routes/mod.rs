//! The HTTP routes: each handler parses its request, calls a stage of the
//! submission pipeline or a store, and shapes the answer. Errors are
//! problem+json (`crate::problem`).

pub mod cache;
pub mod compat;
pub mod jobs;
pub mod models;
pub mod openai;
pub mod openapi;
pub mod ops;
pub mod usage;
pub mod webhooks;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::trace;

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not answer {method}", uri.path()))
}

/// Answers 503 (`timeout`) for a request still running after `limit`. A
/// submission cut short may still have been accepted: retrying it with
/// the same `Idempotency-Key` is safe.
async fn bounded(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit.as_secs()).into_response(),
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let api = &state.config.api;
    let body_limit = api.max_body_bytes;
    // Each request is bounded by `request_timeout_s`, and a request that
    // waits for its job by that wait too.
    let bound = |wait: Duration| {
        let limit = Duration::from_secs(api.request_timeout_s) + wait;
        axum::middleware::from_fn_with_state(limit, bounded)
    };
    let long_polls = Router::new()
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route_layer(bound(Duration::from_secs(api.max_wait_s)));
    // The OpenAI-compatible routes answer errors in OpenAI's shape.
    let calls = Router::new()
        .route("/v1/chat/completions", post(compat::chat_completions))
        .route("/v1/completions", post(compat::completions))
        .route("/v1/embeddings", post(compat::embeddings))
        .route_layer(bound(compat::SYNC_WAIT))
        .merge(
            Router::new()
                .route("/v1/models", get(models::list))
                .route("/v1/models/{id}", get(models::get))
                .route_layer(bound(Duration::ZERO)),
        )
        .route_layer(axum::middleware::from_fn(openai::errors));
    Router::new()
        .route("/v1/jobs", post(jobs::submit))
        .route("/v1/jobs/batch", post(jobs::submit_batch))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/jobs/{id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/v1/webhook-secret", post(webhooks::rotate_tenant_secret))
        .route(
            "/v1/webhook-endpoints",
            post(webhooks::create_endpoint).get(webhooks::list_endpoints),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            delete(webhooks::delete_endpoint),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            post(webhooks::rotate_endpoint_secret),
        )
        .route("/v1/usage", get(usage::report))
        .route("/v1/budget", get(usage::budget))
        .route("/v1/cache", delete(cache::clear))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(bound(Duration::ZERO))
        .merge(long_polls)
        .merge(calls)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        .layer(axum::middleware::from_fn(trace::propagate))
        .with_state(state)
}
