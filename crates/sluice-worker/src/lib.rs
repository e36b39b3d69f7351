//! The worker role.
//!
//! ```text
//! consumers (one per priority queue, prefetch-bounded)
//!   ├→ a job with hours to spare, for a provider that sells batches:
//!   │    the provider-batch tier ([`provider_batch`]: into PostgreSQL,
//!   │    acked; sent, polled, ended or hedged by the lease holder)
//!   → the fair gate ([`fair`]): by class, then the tenant served least,
//!     a capped key's jobs only with a slot; while few wait for a provider
//!   → batcher (key = endpoint + model + priority + prompt-prefix hash)
//!   → at most `max_batch_size × batches_in_flight` jobs in flight at once
//!   → start each job (cancel/deadline checked here, just before the call)
//!   → provider router (one array call, or a bounded fan-out; a streaming
//!     job's chunks relayed to its chunk log as they come, [`relay`])
//!   → store each result (compare-and-set; notifies waiters)
//!   → cache the answer; end the identical jobs that joined it in flight
//!   → ledger rows, then webhook events (confirmed) of jobs with a webhook
//!   → ack each delivery by its own tag
//! ```
//!
//! Shutdown: consumers are cancelled at the broker, open batches flush,
//! in-flight batches finish, store and ack; then `run` returns.

pub mod answers;
pub mod batcher;
pub mod consume;
pub mod depth;
pub mod execute;
pub mod fair;
pub mod followers;
pub mod pending;
pub mod provider_batch;
pub mod relay;
pub mod repeats;
pub mod retry;
pub mod sent;
pub mod trace;

use std::sync::Arc;

use sluice_core::config::WorkerConfig;
use sluice_core::metrics::Metrics;
use sluice_core::Priority;
use sluice_providers::Router;
use sluice_queue::{JobEvents, JobQueue, Source};
use sluice_store::cache::ResponseCache;
use sluice_store::jobs::JobStore;
use sluice_store::usage::UsageLedger;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use batcher::Limits;
use consume::{Consumers, Routes};
use execute::Executor;
use provider_batch::ProviderBatches;

pub struct Worker {
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub router: Arc<Router>,
    pub ledger: Arc<dyn UsageLedger>,
    pub metrics: Arc<Metrics>,
    pub config: WorkerConfig,
    /// Where answers are cached and joined jobs are found.
    pub cache: Arc<dyn ResponseCache>,
    /// Where job ends are announced for webhooks (the queue itself, in practice).
    pub events: Arc<dyn JobEvents>,
    /// Prices the calls a job repeated (built from the config's routes and prices).
    pub repeats: repeats::Repeats,
    /// The provider-batch tier, when a provider sells batches (and a
    /// record to keep them in is at hand).
    pub provider_batches: Option<Arc<ProviderBatches>>,
    /// Fair share between tenants (the gate before the batcher); `None`
    /// hands jobs to the batcher as they come.
    pub fair: Option<fair::Fair>,
}

/// The share of the prefetch each priority queue's consumer gets (3:2:1),
/// so that interactive jobs are taken up first when all queues are full,
/// plus `hold` jobs for the fair gate to choose among.
fn prefetch_for(priority: Priority, config: &WorkerConfig, hold: u16) -> u16 {
    let total = u32::from(config.prefetch());
    let share = match priority {
        Priority::Interactive => total / 2,
        Priority::Standard => total / 3,
        Priority::Batch => total / 6,
    };
    let floor = u32::try_from(config.max_batch_size).unwrap_or(u32::MAX);
    let slots = share.max(floor).max(1) + u32::from(hold);
    u16::try_from(slots).unwrap_or(u16::MAX)
}

impl Worker {
    /// Runs until `shutdown`, then drains: every job taken is stored and
    /// acked (or given back) before this returns.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let executor = Arc::new(Executor {
            store: Arc::clone(&self.store),
            router: Arc::clone(&self.router),
            ledger: Arc::clone(&self.ledger),
            metrics: Arc::clone(&self.metrics),
            followers: followers::Followers {
                cache: Arc::clone(&self.cache),
                queue: Arc::clone(&self.queue),
                store: Arc::clone(&self.store),
                metrics: Arc::clone(&self.metrics),
            },
            events: Arc::clone(&self.events),
            fanout: self.config.fanout_concurrency.max(1),
            repeats: self.repeats.clone(),
            gate: self.fair.as_ref().map(|f| f.gate.clone()),
        });
        let batches = self
            .provider_batches
            .clone()
            .filter(|b| !b.targets.is_empty());
        let consumers = Arc::new(Consumers {
            queue: Arc::clone(&self.queue),
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            config: self.config.clone(),
            events: Arc::clone(&self.events),
            ledger: Arc::clone(&self.ledger),
            repeats: self.repeats.clone(),
            batches: batches.clone(),
        });
        let tasks = TaskTracker::new();
        let (tx, rx) = mpsc::channel(usize::from(self.config.prefetch()));
        // With fair share, the consumers feed the gate, and the gate the
        // batcher; each consumer holds `hold_jobs` more for it to choose among.
        let (realtime, hold, gate) = match self.fair.take() {
            Some(fair) => {
                let hold = if self.config.fair.enabled {
                    self.config.fair.hold_jobs
                } else {
                    0
                };
                let capacity = usize::from(self.config.prefetch()) + 3 * usize::from(hold);
                let (gate_tx, gate_rx) = mpsc::channel(capacity);
                let gate = fair.gate.clone();
                fair.start(&self.config, Arc::clone(&self.metrics), gate_rx, tx, &tasks);
                (gate_tx, hold, Some(gate))
            }
            None => (tx, 0, None),
        };
        let (staged_tx, staged_rx) = match &batches {
            Some(_) => {
                let (tx, rx) = mpsc::channel(usize::from(self.config.prefetch()));
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let routes = Routes {
            realtime,
            staged: staged_tx,
        };
        for priority in Priority::ALL {
            let consumers = Arc::clone(&consumers);
            let (routes, stop) = (routes.clone(), shutdown.clone());
            let prefetch = prefetch_for(priority, &self.config, hold);
            tasks.spawn(async move {
                consumers
                    .jobs(Source::Jobs(priority), prefetch, routes, stop)
                    .await;
            });
        }
        drop(routes);
        {
            let consumers = Arc::clone(&consumers);
            let stop = shutdown.clone();
            tasks.spawn(async move { consumers.dead_letters(stop).await });
        }
        if let (Some(batches), Some(staged_rx)) = (batches, staged_rx) {
            self.run_provider_batches(batches, &executor, staged_rx, &tasks, &shutdown);
        }

        // In flight at once: jobs, `max_batch_size × batches_in_flight` of
        // them. Full batches take `batches_in_flight` slots, the batcher
        // waits when they are taken, and batches grow meanwhile; but many
        // small batches (long calls arriving one at a time) are not held
        // to `batches_in_flight` calls.
        let slots = Arc::new(Semaphore::new(usize::from(self.config.prefetch())));
        let batches = TaskTracker::new();
        let limits = Limits {
            max_jobs: self.config.max_batch_size,
            max_tokens: self.config.max_batch_tokens,
        };
        batcher::run(limits, rx, |flushed| {
            let (executor, slots, batches) =
                (Arc::clone(&executor), Arc::clone(&slots), batches.clone());
            async move {
                let jobs = u32::try_from(flushed.items.len())
                    .unwrap_or(u32::MAX)
                    .max(1);
                let Ok(slot) = slots.acquire_many_owned(jobs).await else {
                    return;
                };
                batches.spawn(async move {
                    executor.run(flushed).await;
                    drop(slot);
                });
            }
        })
        .await;
        // The batcher returns once every job consumer stopped (and the gate
        // gave back what it held): finish the rest.
        batches.close();
        batches.wait().await;
        if let Some(gate) = gate {
            gate.close();
        }
        tasks.close();
        tasks.wait().await;
        tracing::info!("worker drained");
    }

    /// Starts the provider-batch tier on `tasks`: the stage that moves
    /// staged jobs into the record (until the consumers stop), and the
    /// poller (until `shutdown`).
    fn run_provider_batches(
        &self,
        batches: Arc<ProviderBatches>,
        executor: &Arc<Executor>,
        staged: mpsc::Receiver<batcher::Incoming<provider_batch::stage::Staged>>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        let limits = Limits {
            max_jobs: usize::from(self.config.prefetch()),
            max_tokens: u64::MAX / 2,
        };
        {
            let (executor, batches) = (Arc::clone(executor), Arc::clone(&batches));
            tasks.spawn(async move {
                batcher::run(limits, staged, |flushed| {
                    let (executor, batches) = (Arc::clone(&executor), Arc::clone(&batches));
                    async move {
                        provider_batch::stage::stage(&executor, batches.store.as_ref(), flushed)
                            .await;
                    }
                })
                .await;
            });
        }
        let poller = provider_batch::poll::Poller {
            batches,
            executor: Arc::clone(executor),
            queue: Arc::clone(&self.queue),
            metrics: Arc::clone(&self.metrics),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move { poller.run(stop).await });
    }
}
