//! The fair gate, between the consumers and the batcher: the jobs a worker
//! took wait here, per priority class and per flow (tenant and key), and go
//! on to the batcher only while fewer than `window` of the jobs it passed
//! are still waiting for a provider (not yet sent, not ended). So when the
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sluice_core::config::{Config, WorkerConfig};
use sluice_core::fair::{priced_tokens, Counters, Share};
use sluice_core::metrics::Metrics;
use sluice_core::{JobId, Priority};
use sluice_store::fair::{Charge, FairStore};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::batcher::Incoming;
use crate::pending::Pending;

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
    /// Jobs passed on and still waiting for a provider, at most.
    pub window: usize,
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

/// A job waiting in the gate, with its arrival order.
struct Held {
    incoming: Incoming<Pending>,
    seq: u64,
}

/// One tenant's jobs under one key, in arrival order.
struct Flow {
    tenant: String,
    /// The key and its cap, for a key with one.
    capped: Option<(String, u32)>,
    jobs: VecDeque<Held>,
}

#[derive(Default)]
struct Class {
    /// By (tenant, key id): a stable order for ties.
    flows: BTreeMap<(String, String), Flow>,
    counters: Counters,
    /// Charges not yet sent to the fleet.
    charges: Vec<Charge>,
}

/// A job passed on and not yet settled.
struct Passed {
    class: usize,
    tenant: String,
    share: Share,
    model: String,
    key: Option<String>,
}

/// The gate's bookkeeping, without I/O (so its order is unit-tested).
struct State {
    config: GateConfig,
    classes: [Class; 3],
    /// Jobs passed on whose calls have not left and that have not ended.
    waiting: HashSet<JobId>,
    passed: HashMap<JobId, Passed>,
    /// Capped keys found full, and when to ask again.
    full: HashMap<String, Instant>,
    seq: u64,
}

fn class_of(p: Priority) -> usize {
    match p {
        Priority::Interactive => 0,
        Priority::Standard => 1,
        Priority::Batch => 2,
    }
}

impl State {
    fn new(config: GateConfig) -> Self {
        Self {
            config,
            classes: Default::default(),
            waiting: HashSet::new(),
            passed: HashMap::new(),
            full: HashMap::new(),
            seq: 0,
        }
    }

    fn held(&self, class: usize) -> usize {
        self.classes[class]
            .flows
            .values()
            .map(|f| f.jobs.len())
            .sum()
    }

    /// Takes in a job. A tenant with nothing held in its class starts from
    /// the least counter of those that have (idle time banks no credit).
    fn push(&mut self, incoming: Incoming<Pending>) {
        let message = &incoming.item.message;
        let class = &mut self.classes[class_of(message.priority)];
        let tenant = message.tenant_id.clone();
        let key = message.key_id.clone().unwrap_or_default();
        let back_from_idle = !class.flows.keys().any(|(t, _)| *t == tenant);
        if self.config.enabled && back_from_idle {
            let floor = class
                .flows
                .values()
                .map(|f| class.counters.get(&f.tenant))
                .min();
            if let Some(floor) = floor {
                if class.counters.lift(&tenant, floor) > 0 {
                    class.charges.push(Charge {
                        tenant: tenant.clone(),
                        units: 0,
                        floor,
                    });
                }
            }
        }
        let capped = message
            .share
            .key_max_inflight
            .filter(|_| !key.is_empty())
            .map(|cap| (key.clone(), cap));
        self.seq += 1;
        let seq = self.seq;
        class
            .flows
            .entry((tenant.clone(), key))
            .or_insert_with(|| Flow {
                tenant,
                capped,
                jobs: VecDeque::new(),
            })
            .jobs
            .push_back(Held { incoming, seq });
    }

    /// The flow whose job goes next, if one may go at `now`.
    fn pick(&self, now: Instant) -> Option<(usize, (String, String))> {
        if self.waiting.len() >= self.config.window {
            return None;
        }
        for (i, class) in self.classes.iter().enumerate() {
            let may_go = |f: &&Flow| match &f.capped {
                Some((key, _)) => self.full.get(key).is_none_or(|until| *until <= now),
                None => true,
            };
            let best = class
                .flows
                .iter()
                .filter(|(_, f)| may_go(f))
                .filter_map(|(k, f)| f.jobs.front().map(|h| (k, f, h.seq)))
                .min_by_key(|(_, f, seq)| {
                    let served = if self.config.enabled {
                        class.counters.get(&f.tenant)
                    } else {
                        0
                    };
                    (served, *seq)
                });
            if let Some((k, _, _)) = best {
                return Some((i, k.clone()));
            }
        }
        None
    }

    /// Takes the next job of a flow, and its key's cap if it has one.
    fn take(
        &mut self,
        class: usize,
        flow: &(String, String),
    ) -> Option<(Held, Option<(String, u32)>)> {
        let flows = &mut self.classes[class].flows;
        let f = flows.get_mut(flow)?;
        let held = f.jobs.pop_front()?;
        let capped = f.capped.clone();
        if f.jobs.is_empty() {
            flows.remove(flow);
        }
        Some((held, capped))
    }

    /// Puts back a job its key had no slot for, first in its flow.
    fn put_back(&mut self, class: usize, held: Held, key: String, now: Instant) {
        self.full.insert(key, now + FULL_RECHECK);
        let message = &held.incoming.item.message;
        let flow = (
            message.tenant_id.clone(),
            message.key_id.clone().unwrap_or_default(),
        );
        let capped = message
            .share
            .key_max_inflight
            .zip(message.key_id.clone())
            .map(|(cap, key)| (key, cap));
        self.classes[class]
            .flows
            .entry(flow)
            .or_insert_with(|| Flow {
                tenant: message.tenant_id.clone(),
                capped,
                jobs: VecDeque::new(),
            })
            .jobs
            .push_front(held);
    }

    /// A job goes on: charged its prompt tokens, counted as waiting.
    fn passing(&mut self, class: usize, incoming: &Incoming<Pending>) {
        let message = &incoming.item.message;
        let units = message.share.units(priced_tokens(incoming.tokens, 0, 1));
        let c = &mut self.classes[class];
        c.counters.charge(&message.tenant_id, units);
        c.charges.push(Charge {
            tenant: message.tenant_id.clone(),
            units,
            floor: 0,
        });
        self.waiting.insert(message.id);
        self.passed.insert(
            message.id,
            Passed {
                class,
                tenant: message.tenant_id.clone(),
                share: message.share,
                model: message.model.clone(),
                key: message
                    .key_id
                    .clone()
                    .filter(|_| message.share.key_max_inflight.is_some()),
            },
        );
    }

    /// A job passed on ended: charged its completion tokens. Answers its
    /// capped key, whose slot is to be freed.
    fn ended(&mut self, id: JobId, completion: u64) -> Option<String> {
        self.waiting.remove(&id);
        let passed = self.passed.remove(&id)?;
        let weight = self
            .config
            .completion_weights
            .get(&passed.model)
            .copied()
            .unwrap_or(1);
        let units = passed.share.units(priced_tokens(0, completion, weight));
        let c = &mut self.classes[passed.class];
        if units > 0 {
            c.counters.charge(&passed.tenant, units);
            c.charges.push(Charge {
                tenant: passed.tenant,
                units,
                floor: 0,
            });
        }
        if let Some(key) = &passed.key {
            self.full.remove(key);
        }
        passed.key
    }

    /// Every held job, out of the gate.
    fn drain(&mut self) -> Vec<Held> {
        self.classes
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.flows).into_values())
            .flat_map(|f| f.jobs)
            .collect()
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
            self.show_held();
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
                    Event::Sent(ids) => {
                        for id in ids {
                            self.state.waiting.remove(&id);
                        }
                    }
                    Event::Ended { id, completion } => {
                        if let Some(key) = self.state.ended(id, completion) {
                            self.frees.entry(key).or_default().push(id);
                        }
                    }
                    Event::Close => closed = true,
                },
                _ = flush.tick() => self.flush().await,
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
            if class.charges.is_empty() && read.len() < 2 {
                continue;
            }
            let charges = std::mem::take(&mut class.charges);
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
#[path = "fair_tests.rs"]
mod tests;
