//! The gate's bookkeeping, without I/O, so its order is unit-tested: the
//! jobs held per class and flow, the counters, the jobs passed on and
//! whether they still wait for a provider, and the keys found full.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use sluice_core::fair::{priced_tokens, Counters, Share};
use sluice_core::{Endpoint, JobId, JobMessage, Priority};
use sluice_store::fair::Charge;
use tokio::time::Instant;

use super::window::Window;
use super::{GateConfig, FULL_RECHECK};
use crate::batcher::Incoming;
use crate::pending::Pending;

/// A job waiting in the gate, with its arrival order.
pub(super) struct Held {
    pub(super) incoming: Incoming<Pending>,
    seq: u64,
}

/// One tenant's jobs under one key, in arrival order.
pub(super) struct Flow {
    pub(super) tenant: String,
    /// The key and its cap, for a key with one.
    capped: Option<(String, u32)>,
    jobs: VecDeque<Held>,
}

#[derive(Default)]
pub(super) struct Class {
    /// By (tenant, key id): a stable order for ties.
    pub(super) flows: BTreeMap<(String, String), Flow>,
    pub(super) counters: Counters,
    /// Charges not yet sent to the fleet, one per tenant: units summed,
    /// the highest floor a lift set.
    charges: BTreeMap<String, (u64, u64)>,
}

impl Class {
    fn charge(&mut self, tenant: &str, units: u64, floor: u64) {
        let (sum, lifted) = self.charges.entry(tenant.to_owned()).or_default();
        *sum += units;
        *lifted = (*lifted).max(floor);
    }

    /// The charges not yet sent, taken.
    pub(super) fn take_charges(&mut self) -> Vec<Charge> {
        std::mem::take(&mut self.charges)
            .into_iter()
            .map(|(tenant, (units, floor))| Charge {
                tenant,
                units,
                floor,
            })
            .collect()
    }
}

/// A job passed on and not yet settled.
pub(super) struct Passed {
    class: usize,
    pub(super) tenant: String,
    share: Share,
    model: String,
    key: Option<String>,
}

/// A job passed on whose call has not left: since when, how long its
/// batch may wait of its own, and its share of a call in units of
/// `1 / batch_size` (a chat job is a whole call).
struct Waiting {
    since: Instant,
    batch_wait: Duration,
    units: usize,
}

pub(super) struct State {
    pub(super) config: GateConfig,
    pub(super) classes: [Class; 3],
    /// Jobs passed on whose calls have not left and that have not ended.
    waiting: HashMap<JobId, Waiting>,
    /// The waiting jobs' units, summed.
    waiting_units: usize,
    window: Window,
    pub(super) passed: HashMap<JobId, Passed>,
    /// Capped keys found full, and when to ask again.
    pub(super) full: HashMap<String, Instant>,
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
    pub(super) fn new(config: GateConfig) -> Self {
        Self {
            window: Window::new(config.window),
            config,
            classes: Default::default(),
            waiting: HashMap::new(),
            waiting_units: 0,
            passed: HashMap::new(),
            full: HashMap::new(),
            seq: 0,
        }
    }

    pub(super) fn held(&self, class: usize) -> usize {
        self.classes[class]
            .flows
            .values()
            .map(|f| f.jobs.len())
            .sum()
    }

    /// Takes in a job. A tenant with nothing held in its class starts from
    /// the least counter of those that have (idle time banks no credit).
    pub(super) fn push(&mut self, incoming: Incoming<Pending>) {
        let message = &incoming.item.message;
        let i = class_of(message.priority);
        let (class, tenant) = (&mut self.classes[i], &message.tenant_id);
        let back_from_idle = !class.flows.keys().any(|(t, _)| t == tenant);
        if self.config.enabled && back_from_idle {
            let floor = class
                .flows
                .values()
                .map(|f| class.counters.get(&f.tenant))
                .min();
            if let Some(floor) = floor {
                if class.counters.lift(tenant, floor) > 0 {
                    class.charge(tenant, 0, floor);
                }
            }
        }
        self.seq += 1;
        let seq = self.seq;
        self.flow_of(i, &incoming.item.message)
            .jobs
            .push_back(Held { incoming, seq });
    }

    /// The flow whose job goes next, if one may go at `now`.
    pub(super) fn pick(&mut self, now: Instant) -> Option<(usize, (String, String))> {
        if self.waiting_units >= self.window.size() * self.config.batch_size {
            if self.classes.iter().any(|c| !c.flows.is_empty()) {
                self.window.wanted_more();
            }
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
    pub(super) fn take(
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
    pub(super) fn put_back(&mut self, class: usize, held: Held, key: String, now: Instant) {
        self.full.insert(key, now + FULL_RECHECK);
        self.flow_of(class, &held.incoming.item.message)
            .jobs
            .push_front(held);
    }

    /// The flow of `message`'s tenant and key in `class`, made if new.
    fn flow_of(&mut self, class: usize, message: &JobMessage) -> &mut Flow {
        let key = message.key_id.clone().unwrap_or_default();
        let capped = message
            .share
            .key_max_inflight
            .filter(|_| !key.is_empty())
            .map(|cap| (key.clone(), cap));
        self.classes[class]
            .flows
            .entry((message.tenant_id.clone(), key))
            .or_insert_with(|| Flow {
                tenant: message.tenant_id.clone(),
                capped,
                jobs: VecDeque::new(),
            })
    }

    /// A job goes on: charged its prompt tokens, counted as waiting.
    pub(super) fn passing(&mut self, class: usize, incoming: &Incoming<Pending>) {
        let message = &incoming.item.message;
        let units = message.share.units(priced_tokens(incoming.tokens, 0, 1));
        let c = &mut self.classes[class];
        c.counters.charge(&message.tenant_id, units);
        c.charge(&message.tenant_id, units, 0);
        let units = match message.endpoint {
            Endpoint::ChatCompletions => self.config.batch_size,
            Endpoint::Completions | Endpoint::Embeddings => 1,
        };
        self.waiting_units += units;
        self.waiting.insert(
            message.id,
            Waiting {
                since: Instant::now(),
                batch_wait: incoming.max_wait,
                units,
            },
        );
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
    pub(super) fn ended(&mut self, id: JobId, completion: u64) -> Option<String> {
        self.stop_waiting(id);
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
            c.charge(&passed.tenant, units, 0);
        }
        if let Some(key) = &passed.key {
            self.full.remove(key);
        }
        passed.key
    }

    /// The calls of `ids` left: they no longer wait, and how long they
    /// waited past their batch's wait steers the window.
    pub(super) fn sent(&mut self, ids: &[JobId], now: Instant) {
        for id in ids {
            if let Some(w) = self.stop_waiting(*id) {
                let waited = now.saturating_duration_since(w.since);
                self.window.sent(waited.saturating_sub(w.batch_wait));
            }
        }
    }

    fn stop_waiting(&mut self, id: JobId) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        self.waiting_units -= w.units;
        Some(w)
    }

    /// One step of the window's steering.
    pub(super) fn adapt(&mut self) {
        self.window.adapt();
    }

    /// Calls' worth of jobs that may wait for a provider at once, now.
    pub(super) fn window(&self) -> usize {
        self.window.size()
    }

    /// Every held job, out of the gate.
    pub(super) fn drain(&mut self) -> Vec<Held> {
        self.classes
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.flows).into_values())
            .flat_map(|f| f.jobs)
            .collect()
    }
}
