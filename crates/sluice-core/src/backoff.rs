//! Exponential backoff: the one schedule that every retry and reconnect
//! loop waits by, on top of `backon`. A site names its own constants (the
//! first wait, the largest, whether to jitter) and either takes the waits
//! one by one ([`Backoff::delays`], [`Backoff::delay`]) or has a call
//! retried for it ([`Backoff::retry`]).

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use rand::Rng;

/// Waits that start at `first` and double after each, up to `max`;
/// with full jitter, each wait is drawn uniformly between zero and that
/// value, so that clients that failed together do not retry together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    full_jitter: bool,
}

impl Backoff {
    /// `first`, `2 × first`, `4 × first`, … never more than `max` (which
    /// wins over a larger `first`).
    pub const fn exponential(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            full_jitter: false,
        }
    }

    /// The same ceilings, each wait drawn from `0..=ceiling`.
    pub const fn with_full_jitter(self) -> Self {
        Self {
            full_jitter: true,
            ..self
        }
    }

    /// The waits before each retry, in order, without end.
    pub fn delays(&self) -> Delays {
        let ceilings = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.first.min(self.max))
            .with_max_delay(self.max)
            .without_max_times()
            .build();
        Delays {
            ceilings,
            max: self.max,
            full_jitter: self.full_jitter,
        }
    }

    /// The wait before retry `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        // Past 64 doublings every ceiling is `max`: no need to walk further.
        let index = retry.saturating_sub(1).min(64);
        self.delays().wait_nth(index)
    }

    /// Runs `call` until it succeeds, fails with an error `transient` says
    /// is not worth another try, or the next wait would end `within` or
    /// more after the first try began (time spent in the calls counts).
    /// `notify` hears each error that is about to be retried, with the
    /// wait before the next try. The last error is returned.
    pub async fn retry<T, E, F, Fut>(
        &self,
        within: Duration,
        call: F,
        transient: impl FnMut(&E) -> bool,
        notify: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = tokio::time::Instant::now() + within;
        // backon sleeps with tokio's timer (its `tokio-sleep` feature).
        call.retry(self.delays())
            .when(transient)
            .adjust(move |_, wait| wait.filter(|w| tokio::time::Instant::now() + *w < give_up))
            .notify(notify)
            .await
    }
}

/// The waits of a [`Backoff`], one per retry (an endless iterator).
#[derive(Debug)]
pub struct Delays {
    ceilings: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
    full_jitter: bool,
}

impl Delays {
    /// The next wait (the iterator never ends; this says so in its type).
    pub fn wait(&mut self) -> Duration {
        self.next().unwrap_or(self.max)
    }

    fn wait_nth(&mut self, n: u32) -> Duration {
        for _ in 0..n {
            self.ceilings.next();
        }
        self.wait()
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = to_micros(self.ceilings.next().unwrap_or(self.max)).min(self.max);
        Some(if self.full_jitter {
            rand::thread_rng().gen_range(Duration::ZERO..=ceiling)
        } else {
            ceiling
        })
    }
}

/// `backon` doubles in `f32` seconds, which puts nanoseconds of noise on
/// each wait (0.2 s comes out as 200.000003 ms); the nearest microsecond
/// is the schedule as configured.
fn to_micros(d: Duration) -> Duration {
    let micros = (d.as_nanos() + 500) / 1000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_from_the_first_up_to_the_largest() {
        let b = Backoff::exponential(100 * MS, 2000 * MS);
        let waits: Vec<_> = b.delays().take(7).collect();
        let ms = |v: &[u32]| v.iter().map(|n| *n * MS).collect::<Vec<_>>();
        assert_eq!(waits, ms(&[100, 200, 400, 800, 1600, 2000, 2000]));
        assert_eq!(b.delay(1), 100 * MS);
        assert_eq!(b.delay(3), 400 * MS);
        assert_eq!(b.delay(u32::MAX), 2000 * MS);
        // The largest wait bounds even the first.
        assert_eq!(Backoff::exponential(3 * MS, MS).delay(1), MS);
    }

    #[test]
    fn full_jitter_stays_between_zero_and_each_ceiling_and_varies() {
        let b = Backoff::exponential(100 * MS, 400 * MS).with_full_jitter();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            for (retry, ceiling) in [(1, 100), (2, 200), (5, 400)] {
                let wait = b.delay(retry);
                assert!(wait <= ceiling * MS, "retry {retry}: {wait:?}");
                seen.insert(wait);
            }
        }
        assert!(seen.len() > 10, "jitter should vary the waits: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_success_at_a_lasting_error_or_at_the_deadline() {
        let b = Backoff::exponential(100 * MS, 2000 * MS);
        let calls = Cell::new(0);
        let start = tokio::time::Instant::now();
        // Succeeds on the third try, after waits of 100 and 200 ms.
        let ok: Result<u32, &str> = b
            .retry(
                Duration::from_secs(30),
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 3 {
                            Err("down")
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| true,
                |_, _| {},
            )
            .await;
        assert_eq!(ok, Ok(3));
        assert_eq!(start.elapsed(), 300 * MS);

        // An error not worth retrying comes back from the first try.
        calls.set(0);
        let lasting: Result<(), &str> = b
            .retry(
                Duration::from_secs(30),
                || {
                    calls.set(calls.get() + 1);
                    async { Err("corrupt") }
                },
                |e| *e != "corrupt",
                |_, _| {},
            )
            .await;
        assert_eq!((lasting, calls.get()), (Err("corrupt"), 1));

        // Always down: tries until the next wait would pass the deadline.
        calls.set(0);
        let notified = Cell::new(Duration::ZERO);
        let start = tokio::time::Instant::now();
        let down: Result<(), &str> = b
            .retry(
                Duration::from_secs(3),
                || {
                    calls.set(calls.get() + 1);
                    async { Err("down") }
                },
                |_| true,
                |_, wait| notified.set(notified.get() + wait),
            )
            .await;
        assert_eq!(down, Err("down"));
        // Waits of 100, 200, 400, 800 ms (1.5 s); 1.6 s more would end at 3.1 s.
        assert_eq!(calls.get(), 5);
        assert_eq!(start.elapsed(), 1500 * MS);
        assert_eq!(notified.get(), 1500 * MS);
    }
}
