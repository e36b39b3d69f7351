//! How many calls to one provider a process lets be in flight at once:
//! `max_concurrency`, fixed; or, with `latency_target_ms`, a limit found by
//! additive increase and multiplicative decrease (AIMD), as TCP finds a
//! link's capacity and Netflix's concurrency-limits finds a server's.
//!
//! A self-hosted server has a knee: past some number of requests at once
//! its latency climbs while its throughput barely grows. Each call that
//! ends within the target while the limit is in use raises the limit by
//! `1 / limit` (one step a round of calls); a call over the target cuts it
//! to [`BACKOFF`] of itself, at most once per target's time (the calls
//! in flight when the server slowed all come back slow, and count as one
//! signal). Failed calls (errors, refusals) say nothing of latency and
//! leave the limit alone. The limit stays between 1 and `max_concurrency`,
//! so it settles just past the knee, sawing between the target's edge and
//! [`BACKOFF`] of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a call over the target leaves of the limit.
pub const BACKOFF: f64 = 0.9;

pub struct ConcurrencyLimit {
    state: Mutex<State>,
    freed: Notify,
    ceiling: f64,
    /// `None`: the limit is the ceiling, fixed.
    target: Option<Duration>,
    gauge: IntGauge,
}

struct State {
    limit: f64,
    in_flight: usize,
    /// When the limit was last cut.
    cut_at: Option<Instant>,
}

impl ConcurrencyLimit {
    /// At most `ceiling` calls at once; with a `target`, the limit starts
    /// at the ceiling and moves to keep calls within it. `gauge` shows it.
    pub fn new(ceiling: usize, target: Option<Duration>, gauge: IntGauge) -> Arc<Self> {
        let ceiling = ceiling.max(1) as f64;
        gauge.set(ceiling as i64);
        Arc::new(Self {
            state: Mutex::new(State {
                limit: ceiling,
                in_flight: 0,
                cut_at: None,
            }),
            freed: Notify::new(),
            ceiling,
            target,
            gauge,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.lock().limit as usize
    }

    /// Waits for room under the limit; the permit frees it.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            // Registered before the check: a release in between still wakes.
            let freed = self.freed.notified();
            {
                let mut state = self.lock();
                if (state.in_flight as f64) < state.limit.floor() {
                    state.in_flight += 1;
                    return Permit {
                        limit: Arc::clone(self),
                        done: false,
                    };
                }
            }
            freed.await;
        }
    }

    fn release(&self, sample: Option<Duration>) {
        let mut state = self.lock();
        let in_use = state.in_flight as f64 >= state.limit.floor() / 2.0;
        state.in_flight = state.in_flight.saturating_sub(1);
        if let (Some(target), Some(latency)) = (self.target, sample) {
            if latency <= target {
                if in_use {
                    state.limit = (state.limit + 1.0 / state.limit).min(self.ceiling);
                }
            } else {
                let now = Instant::now();
                if state
                    .cut_at
                    .is_none_or(|at| now.duration_since(at) >= target)
                {
                    state.limit = (state.limit * BACKOFF).max(1.0);
                    state.cut_at = Some(now);
                }
            }
            self.gauge.set(state.limit as i64);
        }
        drop(state);
        // A raised limit may make room for more than one.
        self.freed.notify_waiters();
    }
}

/// Room for one call; dropped without [`Permit::done`], it frees the room
/// and says nothing of latency.
pub struct Permit {
    limit: Arc<ConcurrencyLimit>,
    done: bool,
}

impl Permit {
    /// The call ended: `latency` if it answered, `None` if it failed.
    pub fn done(mut self, latency: Option<Duration>) {
        self.done = true;
        self.limit.release(latency);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.limit.release(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn gauge() -> IntGauge {
        IntGauge::new("limit", "the limit").unwrap()
    }

    /// A server with a knee: each call takes `base`, or longer in
    /// proportion once more than `knee` are in flight. `clients` call it
    /// in a closed loop, `calls` times in all; the limit after.
    async fn settle(limit: &Arc<ConcurrencyLimit>, knee: usize, clients: usize, calls: usize) {
        let base = Duration::from_millis(100);
        let at_server = Arc::new(AtomicUsize::new(0));
        let left = Arc::new(AtomicUsize::new(calls));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (limit, at_server, left) =
                (Arc::clone(limit), Arc::clone(&at_server), Arc::clone(&left));
            tasks.spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let permit = limit.acquire().await;
                    let n = at_server.fetch_add(1, Ordering::SeqCst) + 1;
                    let took = base.mul_f64((n as f64 / knee as f64).max(1.0));
                    tokio::time::sleep(took).await;
                    at_server.fetch_sub(1, Ordering::SeqCst);
                    permit.done(Some(took));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_settles_just_past_the_knee() {
        // Latency target 30% over the unloaded call: the knee is 16.
        let limit = ConcurrencyLimit::new(64, Some(Duration::from_millis(130)), gauge());
        settle(&limit, 16, 64, 20_000).await;
        let found = limit.limit();
        assert!((14..=21).contains(&found), "settled at {found}");
        assert_eq!(limit.gauge.get(), found as i64);
    }

    #[tokio::test(start_paused = true)]
    async fn from_one_it_climbs_to_the_knee_and_never_past_the_ceiling() {
        let limit = ConcurrencyLimit::new(64, Some(Duration::from_millis(130)), gauge());
        limit.lock().limit = 1.0;
        settle(&limit, 16, 64, 20_000).await;
        assert!((14..=21).contains(&limit.limit()), "{}", limit.limit());
        // A knee above the ceiling: the limit stops at the ceiling.
        let capped = ConcurrencyLimit::new(8, Some(Duration::from_millis(130)), gauge());
        settle(&capped, 16, 64, 5_000).await;
        assert_eq!(capped.limit(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_target_the_limit_is_fixed_and_holds() {
        let limit = ConcurrencyLimit::new(8, None, gauge());
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let (limit, peak, now) = (Arc::clone(&limit), Arc::clone(&peak), Arc::clone(&now));
            tasks.spawn(async move {
                let permit = limit.acquire().await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                permit.done(Some(Duration::from_secs(5)));
            });
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(peak.load(Ordering::SeqCst), 8);
        assert_eq!(limit.limit(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_calls_and_dropped_permits_free_room_and_move_nothing() {
        let limit = ConcurrencyLimit::new(2, Some(Duration::from_millis(10)), gauge());
        let (a, b) = (limit.acquire().await, limit.acquire().await);
        let mut waiting = std::pin::pin!(limit.acquire());
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        a.done(None);
        let c = waiting.await;
        drop(b);
        drop(c);
        assert_eq!(limit.limit(), 2);
    }
}
