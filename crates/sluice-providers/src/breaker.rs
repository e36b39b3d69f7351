//! A circuit breaker per provider: it opens after a run of failed calls,
//! lets one probe through after a cool-down, and closes again when the
//! probe succeeds. While it is open the router skips the provider without
//! spending a request on it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `sluice_provider_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out; nothing else goes through until it reports.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Permission to call: report how the call went with [`Breaker::record`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Call,
    /// Open: skip this provider for now.
    Skip,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now. After the cool-down the first caller
    /// becomes the probe; others keep skipping until it reports.
    pub fn admit(&self) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Call,
            Inner::Open { until } if Instant::now() >= until => {
                *inner = Inner::HalfOpen;
                Admission::Call
            }
            Inner::Open { .. } | Inner::HalfOpen => Admission::Skip,
        }
    }

    /// How a call went: `false` for a provider failure (connect error,
    /// timeout, 429, 5xx), `true` for anything the provider answered.
    pub fn record(&self, ok: bool) {
        let mut inner = self.lock();
        *inner = match (&*inner, ok) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.config.failures_to_open => {
                Inner::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Inner::Open {
                until: Instant::now() + self.config.cool_down,
            },
        };
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures_to_open: 3,
            cool_down: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_a_run_of_failures_and_skips() {
        let b = breaker();
        b.record(false);
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(true); // a success resets the run
        for _ in 0..3 {
            assert_eq!(b.admit(), Admission::Call);
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admission::Skip);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_once_after_the_cool_down() {
        let b = breaker();
        for _ in 0..3 {
            b.record(false);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(b.admit(), Admission::Skip);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admission::Call);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one probe at a time.
        assert_eq!(b.admit(), Admission::Skip);
        // A failed probe opens it for another cool-down …
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Admission::Call);
        // … a good one closes it.
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(), Admission::Call);
    }
}
