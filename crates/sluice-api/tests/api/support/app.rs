//! `TestApp`: the API's router over the in-memory twins, as `sluice dev`
//! builds it, with a tenant and a key, called in-process through
//! `tower::ServiceExt::oneshot`. A worker and the mock provider (on a
//! 127.0.0.1:0 listener) run on demand, for the routes that need a job to end.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api::{AppState, Backends};
use sluice_core::budget::MemoryBudget;
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_core::Priority;
use sluice_mock::{MockOptions, MockServer};
use sluice_queue::{JobQueue, MemoryQueue, Source, Topology};
use sluice_store::cache::MemoryCache;
use sluice_store::jobs::MemoryJobStore;
use sluice_store::tenants::{MemoryTenantStore, TenantStore};
use sluice_store::usage::MemoryLedger;
use sluice_store::webhooks::MemoryWebhookStore;
use sluice_worker::Worker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults::{FaultyQueue, FaultyStore};

/// The tenant every `TestApp` starts with.
pub const TENANT: &str = "acme";

/// What every test's stack is configured with, before its own TOML: one
/// mock provider serving two priced models. `{MOCK}` is the mock's URL.
const BASE_TOML: &str = r#"
[[providers]]
name = "mock"
kind = "openai"
base_url = "{MOCK}"
timeout_s = 10

[[models]]
name = "mock-small"
providers = ["mock"]

[[models]]
name = "mock-embed"
providers = ["mock"]

[[prices]]
provider = "mock"
model = "mock-small"
input = 1000000
cached_input = 100000
output = 4000000

[[prices]]
provider = "mock"
model = "mock-embed"
input = 100000
cached_input = 0
output = 0
"#;

/// How a test's stack differs from the default.
#[derive(Default)]
pub struct Builder {
    toml: String,
    worker: bool,
}

impl Builder {
    /// TOML appended to the base configuration (`[tenants]`, `[api]`, …).
    pub fn toml(mut self, toml: &str) -> Self {
        self.toml.push('\n');
        self.toml.push_str(toml);
        self
    }

    /// Starts a worker with the stack.
    pub fn worker(mut self) -> Self {
        self.worker = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let mock = MockServer::new(MockOptions::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_url = format!("http://{}/v1", listener.local_addr().unwrap());
        {
            let (mock, stop) = (mock.clone(), shutdown.clone());
            tasks.spawn(async move { mock.serve(listener, stop.cancelled_owned()).await });
        }

        let toml = BASE_TOML.replace("{MOCK}", &mock_url) + &self.toml;
        let config = Arc::new(Config::parse(&toml, "test config").unwrap());
        let metrics = Arc::new(Metrics::with_options(config.metrics.options()));
        let memory_queue = Arc::new(MemoryQueue::new(
            Topology::new("test", config.worker.delivery_limit)
                .with_pack_jobs(config.jobs.pack_jobs)
                .with_webhook_delays(config.webhooks.delays_ms()),
        ));
        let memory_store = Arc::new(MemoryJobStore::new(Duration::from_secs(
            config.jobs.retention_s,
        )));
        let twins = Twins {
            queue: Arc::new(FaultyQueue::new(Arc::clone(&memory_queue))),
            store: Arc::new(FaultyStore::new(Arc::clone(&memory_store))),
            memory_queue,
            memory_store,
            tenants: Arc::new(MemoryTenantStore::new()),
            ledger: Arc::new(MemoryLedger::default()),
            cache: Arc::new(MemoryCache::new()),
            webhooks: Arc::new(MemoryWebhookStore::new()),
            metrics,
            mock,
            config,
        };
        let backends = Backends {
            config: Arc::clone(&twins.config),
            queue: twins.queue.clone(),
            store: twins.store.clone(),
            tenants: twins.tenants.clone(),
            metrics: Arc::clone(&twins.metrics),
            limiter: Arc::new(MemoryBudget::default()),
            usage: twins.ledger.clone(),
            webhooks: twins.webhooks.clone(),
            events: twins.memory_queue.clone(),
            webhook_queue: twins.memory_queue.clone(),
            cache: twins.cache.clone(),
            // The semantic cache embeds through the config's routes, as the
            // API role does, when the test's config names a model.
            embedder: twins.config.cache.semantic.model.as_ref().map(|_| {
                Arc::new(
                    sluice_providers::Router::from_config(
                        &twins.config,
                        Arc::clone(&twins.metrics),
                        Some(Arc::new(MemoryBudget::default())),
                        sluice_providers::CallHooks::default(),
                    )
                    .unwrap(),
                )
            }),
            lexicon: sluice_api::cache::lexicon::Lexicon::configured(&twins.config.cache.semantic)
                .unwrap(),
            files: Arc::new(sluice_store::files::MemoryFileStore::default()),
            batches: Arc::new(sluice_store::batches::MemoryBatchStore::default()),
        };
        let state = AppState::new(backends, &tasks).with_shutdown(shutdown.clone());
        tasks.spawn(sluice_api::batches::drive(state.clone(), shutdown.clone()));
        let stack = Arc::new(Stack {
            router: sluice_api::router(state),
            twins,
            tasks,
            shutdown,
            worker: Mutex::default(),
        });
        if self.worker {
            stack.start_worker();
        }
        TestApp::for_tenant(stack, TENANT).await
    }
}

/// The in-memory backends behind the API, for a test to arrange and to
/// check what the API did. The API sees the queue and the job store
/// through the faulty wrappers; the worker talks to the twins directly.
pub struct Twins {
    pub config: Arc<Config>,
    pub queue: Arc<FaultyQueue>,
    pub memory_queue: Arc<MemoryQueue>,
    pub store: Arc<FaultyStore>,
    pub memory_store: Arc<MemoryJobStore>,
    pub tenants: Arc<MemoryTenantStore>,
    pub ledger: Arc<MemoryLedger>,
    pub cache: Arc<MemoryCache>,
    pub webhooks: Arc<MemoryWebhookStore>,
    pub metrics: Arc<Metrics>,
    /// The provider the worker calls (its stats and bill say what it served).
    pub mock: MockServer,
}

/// Everything one test's API shares, whichever tenant calls it.
pub struct Stack {
    router: axum::Router,
    twins: Twins,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    worker: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Deref for Stack {
    type Target = Twins;
    fn deref(&self) -> &Twins {
        &self.twins
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Stops the worker, the mock and the API's background tasks.
        self.shutdown.cancel();
        self.tasks.close();
    }
}

impl Stack {
    /// Starts a worker on the stack's queue, store, cache and ledger.
    pub fn start_worker(&self) {
        let config = &self.twins.config;
        let fair = sluice_worker::fair::Fair::new(
            Arc::new(sluice_store::fair::MemoryFairStore::default()),
            config,
        );
        let router = sluice_providers::Router::from_config(
            config,
            Arc::clone(&self.metrics),
            Some(Arc::new(MemoryBudget::default())),
            sluice_worker::relay::call_hooks(
                self.memory_store.clone(),
                Some(fair.gate.clone()),
                &self.tasks,
            ),
        )
        .unwrap();
        let worker = Worker {
            queue: self.memory_queue.clone(),
            store: self.memory_store.clone(),
            router: Arc::new(router),
            ledger: self.ledger.clone(),
            metrics: Arc::clone(&self.metrics),
            config: config.worker.clone(),
            cache: self.cache.clone(),
            events: self.memory_queue.clone(),
            repeats: sluice_worker::repeats::Repeats::new(config),
            provider_batches: sluice_worker::provider_batch::ProviderBatches::from_config(
                config,
                &self.metrics,
                Arc::new(sluice_store::provider_batches::MemoryProviderBatchStore::default()),
            )
            .unwrap(),
            fair: Some(fair),
        };
        let stop = self.shutdown.child_token();
        let handle = self.tasks.spawn(worker.run(stop.clone()));
        let previous = self.worker.lock().unwrap().replace((stop, handle));
        assert!(previous.is_none(), "a worker is already running");
    }

    /// Stops the worker; it returns once what it took is stored and acked.
    pub async fn stop_worker(&self) {
        let (stop, handle) = self.worker.lock().unwrap().take().expect("a worker runs");
        stop.cancel();
        handle.await.unwrap();
    }

    /// Jobs waiting in the job queues (the in-memory queue keeps one
    /// message per job; packs are the RabbitMQ queue's).
    pub async fn queued_jobs(&self) -> u64 {
        let mut total = 0;
        for priority in Priority::ALL {
            total += self.queue.depth(Source::Jobs(priority)).await.unwrap();
        }
        total
    }

    /// Runs `future` beside the test (a request that must wait, say),
    /// on the stack's tracker.
    pub fn background<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(future)
    }

    /// The router, as a request gets it.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }
}

/// The API of one test, called as one tenant with one key. Clones made
/// by [`TestApp::tenant`] and [`TestApp::with_key`] share the stack.
#[derive(Clone)]
pub struct TestApp {
    stack: Arc<Stack>,
    /// The bearer key requests send.
    pub key: String,
    pub key_id: String,
    pub tenant_id: String,
    pub tenant_name: String,
}

impl Deref for TestApp {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The default stack, without a worker: jobs stay queued.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// The default stack with a worker: jobs run and end.
    pub async fn spawn_with_worker() -> Self {
        Self::builder().worker().spawn().await
    }

    async fn for_tenant(stack: Arc<Stack>, name: &str) -> Self {
        let tenant = stack.tenants.create_tenant(name).await.unwrap();
        let key = stack.tenants.create_key(name, "test").await.unwrap();
        Self {
            stack,
            key: key.key,
            key_id: key.record.id,
            tenant_id: tenant.id,
            tenant_name: tenant.name,
        }
    }

    /// The same API, as a new tenant with a key of its own.
    pub async fn tenant(&self, name: &str) -> Self {
        Self::for_tenant(Arc::clone(&self.stack), name).await
    }

    /// The same API and tenant, sending `key` instead (even a bad one).
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: key.to_owned(),
            ..self.clone()
        }
    }

    /// Another key of this tenant.
    pub async fn new_key(&self) -> Self {
        let key = self
            .tenants
            .create_key(&self.tenant_name, "another")
            .await
            .unwrap();
        Self {
            key: key.key,
            key_id: key.record.id,
            ..self.clone()
        }
    }
}
