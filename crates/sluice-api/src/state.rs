//! What every handler and stage shares: the backends (behind one `Arc`,
//! so a request clones one pointer), the caches of what they said, the
//! submission flusher and ledger writer, and the shutdown token.

use std::sync::Arc;

use sluice_core::budget::RateBudget;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_queue::{JobEvents, JobQueue, WebhookQueue};
use sluice_store::batches::BatchStore;
use sluice_store::cache::ResponseCache;
use sluice_store::files::FileStore;
use sluice_store::jobs::JobStore;
use sluice_store::tenants::TenantStore;
use sluice_store::usage::UsageLedger;
use sluice_store::webhooks::WebhookStore;

use crate::caches::{EndpointsCache, KeyCache, SpendCache};
use crate::{cache, ingest};

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
    /// The OpenAPI document, set when the router is made from the routes.
    pub openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
    /// When this API process started.
    pub started: chrono::DateTime<chrono::Utc>,
    pub config: Arc<Config>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub metrics: Arc<Metrics>,
    pub keys: KeyCache,
    pub ingest: ingest::Ingest,
    /// Tenants' rate limits, shared by every replica.
    pub limiter: Arc<dyn RateBudget>,
    /// The usage ledger, for reports.
    pub usage: Arc<dyn UsageLedger>,
    /// Tenants' spend this month, read again every few seconds.
    pub spend: SpendCache,
    /// Webhook endpoints, secrets and deliveries.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Where a job's end is announced (cancel).
    pub events: Arc<dyn JobEvents>,
    /// Where manual redeliveries go.
    pub webhook_queue: Arc<dyn WebhookQueue>,
    /// Whether each tenant has endpoints, read again every few seconds.
    pub endpoints: EndpointsCache,
    /// Cached answers, in-flight requests and prompt vectors.
    pub cache: Arc<dyn ResponseCache>,
    /// The semantic cache's embedder, when one is configured.
    pub semantic: Option<Arc<cache::semantic::SemanticIndex>>,
    /// Writes the ledger rows of cache hits and embedding calls.
    pub cache_rows: cache::ledger::RowWriter,
    /// Tenants' uploads (the Files API).
    pub files: Arc<dyn FileStore>,
    /// Batches of the Batch API, and their lines.
    pub batches: Arc<dyn BatchStore>,
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
    /// The semantic cache's lexicon, loaded from `[cache.semantic] lexicon`.
    pub lexicon: Option<Arc<cache::lexicon::Lexicon>>,
    pub files: Arc<dyn FileStore>,
    pub batches: Arc<dyn BatchStore>,
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
            cache::semantic::SemanticIndex::new(router, &b.config.cache.semantic, b.lexicon)
                .map(Arc::new)
        });
        let cache_rows = cache::ledger::RowWriter::start(Arc::clone(&b.usage), tasks);
        let shared = Shared {
            started: chrono::Utc::now(),
            openapi: std::sync::OnceLock::new(),
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
            keys: KeyCache::default(),
            spend: Default::default(),
            webhooks: b.webhooks,
            events: b.events,
            webhook_queue: b.webhook_queue,
            endpoints: Default::default(),
            files: b.files,
            batches: b.batches,
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
