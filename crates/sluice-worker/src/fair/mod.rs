//! The fair gate, between the consumers and the batcher: the jobs a worker
//! took wait here, per priority class and per flow (tenant and key), and go
//! on to the batcher only while fewer than a window of calls' worth of the
//! jobs it passed are still waiting for a provider (not yet sent, not
//! ended; the window adapts, see [`window`]). So when the
//! provider is the bottleneck, jobs queue here and not at its budget, and
//! the order they leave in is decided here:
//!
//! 1. the highest priority class with a job that may go (interactive, then
//!    standard, then batch);
//! 2. within it, the tenant whose virtual counter is least
//!    (`sluice_core::fair`): a job is charged its prompt tokens when it
//!    goes on and its completion tokens (weighted by the model's output
//!    over input price) when it ends, over its tenant's weight. Off
//!    (`[worker.fair] enabled = false`), the oldest job goes first;
//! 3. a job whose key has a cap on jobs in flight goes only once it took
//!    one of the key's slots (fleet-wide, `FairStore::take_slot`); a full
//!    key's jobs wait here (and are asked for again when one of its jobs
//!    ends, or after [`FULL_RECHECK`]), while others go past them.
//!
//! The counters are the fleet's: every [`FLUSH_EVERY`] the gate sends its
//! charges to the `FairStore` and reads back the counters of the tenants it
//! holds jobs of, so a tenant served by other workers is not favoured here.
//! The gate never waits for the counters to pick (a store that fails only
//! makes the order local); it waits for a key's slot, one round trip, only
//! for jobs of a capped key (a store that fails lets the job go).
//!
//! Invariants: every job taken is handed on or given back (requeued, on
//! shutdown); a held job is unacked, so it survives the worker's death and
//! counts in `sluice_inflight_jobs` (the autoscaler's backlog); the gate
//! changes the order of jobs, never their path (a job still starts, calls,
//! stores and acks as before).

mod state;
mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::config::{Config, WorkerConfig};
use sluice_core::metrics::Metrics;
use sluice_core::{JobId, Priority};
use sluice_store::fair::FairStore;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::batcher::Incoming;
use crate::pending::Pending;
use state::State;

/// How often charges go to the fleet and counters come back.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// How long a key found full waits before its slot is asked for again,
/// when none of its jobs ended here meanwhile (they may end elsewhere).
pub const FULL_RECHECK: Duration = Duration::from_millis(100);

/// How the gate orders and lets jobs go.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// Fair share on; off, the oldest job of a class goes first.
    pub enabled: bool,
    /// Calls' worth of jobs passed on and still waiting for a provider,
    /// at most.
    pub window: usize,
    /// Jobs of an array endpoint (completions, embeddings) that make one
    /// call: each counts this much less than a chat job in the window.
    pub batch_size: usize,
    /// How long a key's slot outlives a worker that died holding it.
    pub lease: Duration,
    /// Per model, what a completion token counts against a prompt token
    /// (its output price over its input price; 1 when absent).
    pub completion_weights: HashMap<String, u64>,
}

/// A worker's fair share, made before the worker starts (its [`Gate`]
/// handle goes to the send log) and started by it ([`Fair::start`]).
pub struct Fair {
    pub gate: Gate,
    events: mpsc::UnboundedReceiver<Event>,
    store: Arc<dyn FairStore>,
    completion_weights: HashMap<String, u64>,
}

impl Fair {
    /// Fair share over `store`, pricing completion tokens as `config`'s
    /// price table does.
    pub fn new(store: Arc<dyn FairStore>, config: &Config) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        Self {
            gate: Gate { events },
            events: rx,
            store,
            completion_weights: completion_weights(config),
        }
    }

    /// Starts the gate on `tasks`: jobs come from `input` and go to `out`.
    /// It runs until `input` closes (held jobs are then given back) and
    /// [`Gate::close`] says every job passed on has settled.
    pub fn start(
        self,
        config: &WorkerConfig,
        metrics: Arc<Metrics>,
        input: mpsc::Receiver<Incoming<Pending>>,
        out: mpsc::Sender<Incoming<Pending>>,
        tasks: &TaskTracker,
    ) {
        let config = GateConfig {
            enabled: config.fair.enabled,
            window: config.fair.window(config.max_batch_size),
            batch_size: config.max_batch_size.max(1),
            lease: Duration::from_secs(config.fair.slot_lease_s),
            completion_weights: self.completion_weights,
        };
        let actor = Actor {
            state: State::new(config),
            store: self.store,
            metrics,
            out: Some(out),
            frees: HashMap::new(),
        };
        tasks.spawn(actor.run(input, self.events));
    }
}

/// Per model, its first provider's output price over its input price
/// (standard tier, at least 1): what a completion token counts.
pub fn completion_weights(config: &Config) -> HashMap<String, u64> {
    config
        .models
        .iter()
        .filter_map(|m| {
            let provider = m.providers.first()?;
            let billed = m.upstream_model.as_deref().unwrap_or(&m.name);
            let price = config.price(provider, billed)?.standard;
            let weight = price.output.checked_div(price.input).unwrap_or(1).max(1);
            Some((m.name.clone(), weight))
        })
        .collect()
}

/// The handle the rest of the worker tells the gate what became of the
/// jobs it passed on.
#[derive(Clone)]
pub struct Gate {
    events: mpsc::UnboundedSender<Event>,
}

enum Event {
    /// These jobs' calls left: they no longer wait for a provider.
    Sent(Vec<JobId>),
    /// A job passed on was settled, with its completion tokens.
    Ended { id: JobId, completion: u64 },
    /// Every job passed on has settled: stop once the input is done.
    Close,
}

impl Gate {
    /// The calls of `jobs` are leaving for the provider.
    pub fn sent(&self, jobs: &[JobId]) {
        let _ = self.events.send(Event::Sent(jobs.to_vec()));
    }

    /// The job `id` was settled (acked or given back), its answer
    /// `completion` tokens long.
    pub fn ended(&self, id: JobId, completion: u64) {
        let _ = self.events.send(Event::Ended { id, completion });
    }

    /// Every job the gate passed on has settled.
    pub fn close(&self) {
        let _ = self.events.send(Event::Close);
    }
}

struct Actor {
    state: State,
    store: Arc<dyn FairStore>,
    metrics: Arc<Metrics>,
    /// The batcher; `None` once the input is done.
    out: Option<mpsc::Sender<Incoming<Pending>>>,
    /// Slots to free, per key.
    frees: HashMap<String, Vec<JobId>>,
}

impl Actor {
    async fn run(
        mut self,
        mut input: mpsc::Receiver<Incoming<Pending>>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut input_done, mut closed) = (false, false);
        loop {
            self.pass_on().await;
            if input_done && (closed || self.state.passed.is_empty()) {
                break;
            }
            let recheck = self.state.full.values().min().copied();
            tokio::select! {
                job = input.recv(), if !input_done => match job {
                    Some(job) => self.state.push(job),
                    None => {
                        input_done = true;
                        self.give_back().await;
                    }
                },
                Some(event) = events.recv() => match event {
                    Event::Sent(ids) => self.state.sent(&ids, Instant::now()),
                    Event::Ended { id, completion } => {
                        if let Some(key) = self.state.ended(id, completion) {
                            self.frees.entry(key).or_default().push(id);
                        }
                    }
                    Event::Close => closed = true,
                },
                _ = flush.tick() => {
                    self.state.adapt();
                    self.flush().await;
                    self.show_held();
                }
                () = sleep_until(recheck) => {
                    let now = Instant::now();
                    self.state.full.retain(|_, until| *until > now);
                }
            }
        }
        self.flush().await;
        self.show_held();
    }

    /// Passes on every job that may go now.
    async fn pass_on(&mut self) {
        let Some(out) = self.out.clone() else {
            return;
        };
        while let Some((class, flow)) = self.state.pick(Instant::now()) {
            let Some((held, capped)) = self.state.take(class, &flow) else {
                break;
            };
            if let Some((key, cap)) = capped {
                let id = held.incoming.item.message.id;
                let lease = self.state.config.lease;
                match self.store.take_slot(&key, cap, id, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.state.put_back(class, held, key, Instant::now());
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "cannot take a key's slot; letting the job go");
                    }
                }
            }
            self.state.passing(class, &held.incoming);
            if let Err(mpsc::error::SendError(lost)) = out.send(held.incoming).await {
                // The batcher is gone (shutting down): give the job back.
                let message = &lost.item.message;
                if let Some(key) = self.state.ended(message.id, 0) {
                    self.frees.entry(key).or_default().push(message.id);
                }
                self.metrics.inflight_jobs.dec();
                let _ = lost.item.delivery.requeue().await;
            }
        }
    }

    /// Gives back every held job (shutting down): none was started.
    async fn give_back(&mut self) {
        self.out = None;
        let held = self.state.drain();
        if !held.is_empty() {
            tracing::info!(jobs = held.len(), "giving back the jobs the fair gate held");
        }
        for h in held {
            self.metrics.inflight_jobs.dec();
            if let Err(e) = h.incoming.item.delivery.requeue().await {
                tracing::warn!(job = %h.incoming.item.message.id, error = %e, "giving a held job back");
            }
        }
    }

    /// Sends the charges, reads the fleet's counters of the tenants held,
    /// and frees the slots of ended jobs.
    async fn flush(&mut self) {
        for (i, priority) in Priority::ALL.into_iter().enumerate() {
            let class = &mut self.state.classes[i];
            let mut read: Vec<String> = class.flows.values().map(|f| f.tenant.clone()).collect();
            read.dedup();
            let charges = class.take_charges();
            if charges.is_empty() && read.len() < 2 {
                continue;
            }
            match self.store.charge(priority, &charges, &read).await {
                Ok(values) => {
                    for (tenant, value) in read.iter().zip(values) {
                        class.counters.merge(tenant, value);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share fair-share counters; ordering by this worker's alone");
                }
            }
        }
        for (key, jobs) in std::mem::take(&mut self.frees) {
            if let Err(e) = self.store.free_slots(&key, &jobs).await {
                tracing::warn!(key = %key, error = %e, "cannot free a key's slots; they expire with their lease");
            }
        }
    }

    fn show_held(&self) {
        let window = i64::try_from(self.state.window()).unwrap_or(i64::MAX);
        self.metrics.fair_window_calls.set(window);
        for (i, priority) in Priority::ALL.into_iter().enumerate() {
            let held = i64::try_from(self.state.held(i)).unwrap_or(i64::MAX);
            self.metrics
                .fair_held_jobs
                .with_label_values(&[priority.as_str()])
                .set(held);
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
