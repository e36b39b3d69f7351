//! The API role: a thin HTTP front that checks the caller's key and the
//! job, stores the job's record, publishes it with a confirmed publish,
//! and answers reads (and long-polls) from the job store.
//!
//! Invariants: a 202 means the broker confirmed the job; one tenant never
//! sees another's jobs (404); every error is problem+json.

pub mod budget;
pub mod cache;
pub mod compat;
pub mod extract;
pub mod ingest;
pub mod jobs;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod submit;
pub mod trace;
pub mod usage;
pub mod view;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use sluice_core::budget::RateBudget;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_queue::{JobEvents, JobQueue, WebhookQueue};
use sluice_store::cache::ResponseCache;
use sluice_store::jobs::JobStore;
use sluice_store::tenants::TenantStore;
use sluice_store::usage::UsageLedger;
use sluice_store::webhooks::WebhookStore;

use crate::extract::KeyCache;
use crate::problem::ApiError;

/// What every handler gets: the shared backends behind one `Arc` (a
/// request clones one pointer, not each backend), and the shutdown token.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
    /// Cancelled when the process shuts down: long-polls answer at once
    /// (with the job as it is), so a rollout does not wait out their `wait`.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The backends and caches the handlers share.
pub struct Shared {
    pub config: Arc<Config>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<KeyCache>,
    pub ingest: ingest::Ingest,
    /// Tenants' rate limits, shared by every replica.
    pub limiter: Arc<dyn RateBudget>,
    /// The usage ledger, for reports.
    pub usage: Arc<dyn UsageLedger>,
    /// Tenants' spend this month, read again every few seconds.
    pub spend: Arc<budget::SpendCache>,
    /// Webhook endpoints, secrets and deliveries.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Where a job's end is announced (cancel).
    pub events: Arc<dyn JobEvents>,
    /// Where manual redeliveries go.
    pub webhook_queue: Arc<dyn WebhookQueue>,
    /// Whether each tenant has endpoints, read again every few seconds.
    pub endpoints: Arc<webhooks::EndpointsCache>,
    /// Cached answers, in-flight requests and prompt vectors.
    pub cache: Arc<dyn ResponseCache>,
    /// The semantic cache's embedder, when one is configured.
    pub semantic: Option<Arc<cache::semantic::SemanticIndex>>,
    /// Writes the ledger rows of cache hits and embedding calls.
    pub cache_rows: cache::ledger::RowWriter,
}

/// What the API talks to.
pub struct Backends {
    pub config: Arc<Config>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<dyn RateBudget>,
    pub usage: Arc<dyn UsageLedger>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub events: Arc<dyn JobEvents>,
    pub webhook_queue: Arc<dyn WebhookQueue>,
    pub cache: Arc<dyn ResponseCache>,
    /// Calls the semantic cache's embedding model (the config's routes).
    pub embedder: Option<Arc<sluice_providers::Router>>,
}

impl AppState {
    /// The state, with its submission flusher running on `tasks` (it stops
    /// once the state and every clone of it are dropped).
    pub fn new(b: Backends, tasks: &tokio_util::task::TaskTracker) -> Self {
        let ingest = ingest::Ingest::start(
            Arc::clone(&b.queue),
            Arc::clone(&b.store),
            Arc::clone(&b.metrics),
            tasks,
        );
        let semantic = b.embedder.and_then(|router| {
            cache::semantic::SemanticIndex::new(router, &b.config.cache.semantic).map(Arc::new)
        });
        let cache_rows = cache::ledger::RowWriter::start(Arc::clone(&b.usage), tasks);
        let shared = Shared {
            cache: b.cache,
            semantic,
            cache_rows,
            ingest,
            limiter: b.limiter,
            usage: b.usage,
            config: b.config,
            queue: b.queue,
            store: b.store,
            tenants: b.tenants,
            metrics: b.metrics,
            keys: Arc::default(),
            spend: Arc::default(),
            webhooks: b.webhooks,
            events: b.events,
            webhook_queue: b.webhook_queue,
            endpoints: Arc::default(),
        };
        Self {
            shared: Arc::new(shared),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Long-polls end early once `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: tokio_util::sync::CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.api.max_body_bytes;
    Router::new()
        .route("/v1/jobs", post(jobs::submit))
        .route("/v1/jobs/batch", post(jobs::submit_batch))
        .route("/v1/jobs/{id}", get(jobs::get_job))
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
            axum::routing::delete(webhooks::delete_endpoint),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            post(webhooks::rotate_endpoint_secret),
        )
        .route("/v1/usage", get(usage::report))
        .route("/v1/budget", get(budget::show))
        .route("/v1/cache", axum::routing::delete(cache::clear))
        .route("/v1/chat/completions", post(compat::chat_completions))
        .route("/v1/completions", post(compat::completions))
        .route("/v1/embeddings", post(compat::embeddings))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        .layer(axum::middleware::from_fn(trace::propagate))
        .with_state(state)
}

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
