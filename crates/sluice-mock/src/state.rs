//! The state every handler shares: the options, the counters, the bill,
//! the prefix cache, the rate-limit windows, the down switch, and the
//! files and batches; [`Shared::serve`], which accounts for a real-time
//! request and waits as long as the latency model says (its parts,
//! [`Shared::account`], [`Shared::slot`] and [`Shared::latency_of`], are
//! what a streamed answer uses), and [`Shared::charge`], the one place a
//! request is billed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::admission::{quota_headers, Admission};
use crate::batches::Store;
use crate::bill::{MockBill, Refusal};
use crate::cache::{Boundary, CacheOutcome, PrefixCache};
use crate::latency::{LatencyParts, Sequence};
use crate::limits::RateLimiter;
use crate::options::MockOptions;
use crate::pricing::{Tier, Usage};
use crate::stats::MockStats;
use crate::tally::{lock, Tally};

/// The header that carries a billed request's cost in micro-dollars.
pub(crate) const COST_HEADER: &str = "x-mock-cost-micros";

/// Cheap to clone; all clones see the same state.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: MockOptions,
    stats: Tally<MockStats>,
    bill: Tally<MockBill>,
    daily: Tally<crate::bill::DailyCosts>,
    cache: Mutex<PrefixCache>,
    limiter: Mutex<RateLimiter>,
    down: AtomicBool,
    /// The sequence number of the next admitted request.
    next_sequence: AtomicU64,
    /// The sequence number of the next flex request (see `dice`).
    next_flex: AtomicU64,
    /// The files and batches (see `batches`).
    batches: Mutex<Store>,
    /// Slots for requests being served, when `max_concurrency` is set.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    traces: crate::traces::TraceLog,
    received: crate::received::RequestLog,
}

/// What serving one request costs, for the counters, the bill and the
/// latency model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Work {
    /// Prompts in the request.
    pub(crate) prompts: u64,
    /// One per prompt: its tokens, cached tokens and decode length.
    pub(crate) sequences: Vec<Sequence>,
    /// Completion tokens over all choices (as reported in `usage`).
    pub(crate) completion_tokens: u64,
    /// Prompt tokens written to the cache at the cache-write price.
    pub(crate) cache_write_tokens: u64,
}

impl Work {
    /// The billed usage.
    pub(crate) fn usage(&self) -> Usage {
        let sum =
            |f: fn(&Sequence) -> u64| self.sequences.iter().map(f).fold(0u64, u64::saturating_add);
        Usage {
            prompt_tokens: sum(|s| s.prompt_tokens),
            cached_tokens: sum(|s| s.cached_tokens),
            cache_write_tokens: self.cache_write_tokens,
            completion_tokens: self.completion_tokens,
        }
    }
}

/// What a served request was charged, and the headers that say so.
#[derive(Debug, Clone)]
pub(crate) struct Receipt {
    pub(crate) headers: HeaderMap,
}

impl Shared {
    pub(crate) fn new(options: MockOptions) -> Self {
        let slots = options
            .max_concurrency
            .map(|slots| Arc::new(tokio::sync::Semaphore::new(slots.get())));
        Self {
            inner: Arc::new(Inner {
                slots,
                options,
                stats: Tally::default(),
                bill: Tally::default(),
                daily: Tally::default(),
                cache: Mutex::default(),
                limiter: Mutex::default(),
                down: AtomicBool::new(false),
                next_sequence: AtomicU64::new(0),
                next_flex: AtomicU64::new(0),
                batches: Mutex::default(),
                traces: crate::traces::TraceLog::default(),
                received: crate::received::RequestLog::default(),
            }),
        }
    }

    pub(crate) fn options(&self) -> &MockOptions {
        &self.inner.options
    }

    pub(crate) fn stats(&self) -> &Tally<MockStats> {
        &self.inner.stats
    }

    pub(crate) fn daily(&self) -> &Tally<crate::bill::DailyCosts> {
        &self.inner.daily
    }

    pub(crate) fn bill(&self) -> &Tally<MockBill> {
        &self.inner.bill
    }

    pub(crate) fn traces(&self) -> &crate::traces::TraceLog {
        &self.inner.traces
    }

    pub(crate) fn received(&self) -> &crate::received::RequestLog {
        &self.inner.received
    }

    pub(crate) fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::SeqCst)
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Back to a fresh start with the same options: counters, bill, prefix
    /// cache, rate-limit windows, request numbering, files and batches. The
    /// down switch stays as it is.
    pub(crate) fn reset(&self) {
        *self.batches() = Store::default();
        self.stats().reset();
        self.bill().reset();
        self.daily().reset();
        lock(&self.inner.cache).clear();
        lock(&self.inner.limiter).clear();
        self.inner.next_sequence.store(0, Ordering::SeqCst);
        self.inner.next_flex.store(0, Ordering::SeqCst);
        self.traces().clear();
        self.received().clear();
    }

    /// Counts an error served instead of an answer, in the stats and the
    /// bill.
    pub(crate) fn refused(&self, refusal: Refusal) {
        self.stats().update(|stats| stats.refusals.count(refusal));
        self.bill().update(|bill| bill.refusals.count(refusal));
    }

    pub(crate) fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.inner.limiter)
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.inner.next_sequence.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn next_flex_sequence(&self) -> u64 {
        self.inner.next_flex.fetch_add(1, Ordering::SeqCst)
    }

    /// The files and batches. Whoever holds this lock may take the cache,
    /// bill and counter locks (answering batch lines), never the reverse.
    pub(crate) fn batches(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.batches)
    }

    /// Brings every batch up to now, so that the bill and the counters
    /// include the lines due (see `batches::engine`).
    pub(crate) fn advance_batches(&self) {
        self.batches().advance(self, Instant::now());
    }

    /// The counters, batches included, as `GET /mock/stats` shows them.
    pub(crate) fn stats_snapshot(&self) -> MockStats {
        self.advance_batches();
        let mut stats = self.stats().snapshot();
        stats.batches = self.batches().stats();
        stats
    }

    /// The bill, batch lines due included, as `GET /mock/bill` shows it.
    pub(crate) fn bill_snapshot(&self) -> MockBill {
        self.advance_batches();
        self.bill().snapshot()
    }

    /// Bills `usage` on `model` at the price of `tier`, in the bill and the
    /// daily costs; returns the cost in micro-dollars.
    pub(crate) fn charge(&self, model: &str, tier: Tier, usage: &Usage) -> u64 {
        let cost_micros = self.options().prices.cost_micros_at(model, tier, usage);
        self.bill()
            .update(|bill| bill.charge(model, tier, usage, cost_micros));
        self.daily()
            .update(|daily| daily.charge(crate::routes::costs::today(), model, cost_micros));
        cost_micros
    }

    /// Looks a prompt's prefix boundaries up in the cache and stores them.
    pub(crate) fn cache_lookup(&self, boundaries: &[Boundary]) -> CacheOutcome {
        if boundaries.is_empty() {
            return CacheOutcome::default();
        }
        lock(&self.inner.cache).lookup_and_store(
            &self.options().prefix_cache,
            boundaries,
            Instant::now(),
        )
    }

    /// Counts and bills the request at its tier's price, then waits for a
    /// slot (with `max_concurrency`) and as long as the latency model says
    /// (times the flex slowdown on flex, plus any stall).
    ///
    /// The request is counted and billed before the wait, as a provider
    /// bills a request it has accepted even when the client hangs up before
    /// the answer arrives.
    pub(crate) async fn serve(
        &self,
        path: &str,
        model: &str,
        admission: &Admission,
        work: &Work,
    ) -> Receipt {
        let receipt = self.account(path, model, admission, work);
        let delay = self.latency_of(admission, work).total();
        let _slot = self.slot().await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        receipt
    }

    /// Counts and bills an admitted request at its tier's price: the
    /// headers its answer carries (cost, rate limits).
    pub(crate) fn account(
        &self,
        path: &str,
        model: &str,
        admission: &Admission,
        work: &Work,
    ) -> Receipt {
        let usage = work.usage();
        self.stats().update(|stats| {
            stats.record(
                path,
                work.prompts,
                usage.prompt_tokens,
                usage.completion_tokens,
            );
            if admission.stall.is_some() {
                stats.stalled();
            }
        });
        let cost_micros = self.charge(model, admission.tier, &usage);
        let mut headers = admission
            .quota
            .as_ref()
            .map(quota_headers)
            .unwrap_or_default();
        headers.insert(COST_HEADER, HeaderValue::from(cost_micros));
        Receipt { headers }
    }

    /// How long the admitted request takes, as the latency model says
    /// (jittered, times the flex slowdown on flex, plus any stall), split
    /// into the wait for the first token and decode.
    pub(crate) fn latency_of(&self, admission: &Admission, work: &Work) -> LatencyParts {
        let options = self.options();
        let parts = options.latency_parts(work.sequences.iter().copied());
        let mut delay = options.jittered(parts.total(), admission.sequence);
        if admission.tier == Tier::Flex {
            let nanos = options.flex.slowdown.of(delay.as_nanos());
            delay = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
        parts.scaled_to(delay, admission.stall.unwrap_or(Duration::ZERO))
    }

    /// A slot to serve in, held until dropped; none without
    /// `max_concurrency`. Waits its turn when every slot is taken.
    pub(crate) async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The semaphore is never closed, so a failed acquire cannot happen;
        // it would only mean serving without a slot.
        match &self.inner.slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        }
    }
}
