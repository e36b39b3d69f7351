//! The HTTP routes: each handler parses its request, calls a stage of the
//! submission pipeline or a store, and shapes the answer. Errors are
//! problem+json (`crate::problem`).

pub mod batches;
pub mod cache;
pub mod compat;
pub mod files;
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
use axum::Router;
use sluice_core::config::ApiConfig;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Every route of the API, and the OpenAPI document collected from them.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.api.max_body_bytes;
    let (routes, doc) = routes(&state.config.api).split_for_parts();
    // One document per process: a second router (tests) makes the same.
    let _ = state.openapi.set(openapi::finish(doc));
    routes
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

/// Every route, each with its OpenAPI operation: a route registered here is
/// in the document, and nothing else is.
fn routes(api: &ApiConfig) -> OpenApiRouter<AppState> {
    // Each request is bounded by `request_timeout_s`, and a request that
    // waits for its job by that wait too.
    let bound = |wait: Duration| {
        let limit = Duration::from_secs(api.request_timeout_s) + wait;
        axum::middleware::from_fn_with_state(limit, bounded)
    };
    let long_polls = OpenApiRouter::new()
        .routes(routes!(jobs::get_job))
        .route_layer(bound(Duration::from_secs(api.max_wait_s)));
    // The OpenAI-compatible routes answer errors in OpenAI's shape.
    let calls = OpenApiRouter::new()
        .routes(routes!(compat::chat_completions))
        .routes(routes!(compat::completions))
        .routes(routes!(compat::embeddings))
        .route_layer(bound(compat::SYNC_WAIT))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(models::list))
                .routes(routes!(models::get))
                .routes(routes!(files::list))
                .routes(routes!(files::get, files::delete))
                .routes(routes!(files::content))
                .routes(routes!(batches::create, batches::list))
                .routes(routes!(batches::get))
                .routes(routes!(batches::cancel))
                .route_layer(bound(Duration::ZERO)),
        )
        .merge(
            // An upload streams to the store, up to `[files] max_bytes`
            // (its own limit, not the body limit), and may take a while.
            OpenApiRouter::new()
                .routes(routes!(files::upload))
                .route_layer(DefaultBodyLimit::disable())
                .route_layer(bound(files::UPLOAD_WAIT)),
        )
        .route_layer(axum::middleware::from_fn(openai::errors));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(jobs::submit))
        .routes(routes!(jobs::submit_batch))
        .routes(routes!(jobs::cancel))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::rotate_tenant_secret))
        .routes(routes!(webhooks::create_endpoint, webhooks::list_endpoints))
        .routes(routes!(webhooks::delete_endpoint))
        .routes(routes!(webhooks::rotate_endpoint_secret))
        .routes(routes!(usage::report))
        .routes(routes!(usage::budget))
        .routes(routes!(cache::clear))
        .routes(routes!(cache::samples))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .route_layer(bound(Duration::ZERO))
        .merge(long_polls)
        .merge(calls)
}
