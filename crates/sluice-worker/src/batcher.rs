//! Micro-batching: pending jobs grouped by batch key, each group flushed
//! when it is full (jobs), heavy (estimated prompt tokens) or old enough
//! (the max wait of its priority class, counted from its first job).
//!
//! A batch waits only when waiting can grow it: each key keeps the mean
//! gap between its jobs' arrivals (an exponentially weighted mean of the
//! gaps, [`Arrivals`]). A job that would open a batch while that mean is
//! longer than its class's max wait, so that no other job is expected in
//! time to join, goes out at once (reason `idle`); under load the gaps are
//! short and batches wait, and fill, as before. A key seen for the first
//! time waits, as nothing is known of its rate.

use std::collections::HashMap;
use std::time::Duration;

use sluice_core::batching::BatchKey;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_jobs: usize,
    pub max_tokens: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    Size,
    Tokens,
    Wait,
    /// Alone at once: no other job was expected within the wait.
    Idle,
    Shutdown,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Tokens => "tokens",
            Self::Wait => "wait",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug)]
pub struct Flushed<T> {
    pub key: BatchKey,
    pub items: Vec<T>,
    pub reason: FlushReason,
    /// When the batch's first job came in.
    pub opened: Instant,
}

struct Open<T> {
    items: Vec<T>,
    tokens: u64,
    opened: Instant,
    due: Instant,
}

/// The weight of the newest gap in a key's mean gap.
const GAP_WEIGHT: f64 = 0.25;
/// Keys whose last job is older than this are forgotten when there are
/// more than [`MAX_KEYS`] of them (all are, if half of them are newer).
const FORGET_AFTER: Duration = Duration::from_secs(60);
const MAX_KEYS: usize = 4096;

/// How a key's jobs arrive: when the last one came, and the mean gap.
#[derive(Clone, Copy, Debug)]
struct Arrivals {
    last: Instant,
    mean_gap: Option<Duration>,
}

impl Arrivals {
    /// Notes a job arriving at `now`.
    fn arrived(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last);
        self.mean_gap = Some(match self.mean_gap {
            None => gap,
            Some(mean) => mean.mul_f64(1.0 - GAP_WEIGHT) + gap.mul_f64(GAP_WEIGHT),
        });
        self.last = now;
    }

    /// Whether another job is expected within `wait` (unknown: yes).
    fn expects_another_within(&self, wait: Duration) -> bool {
        self.mean_gap.is_none_or(|gap| gap <= wait)
    }
}

pub struct Batcher<T> {
    limits: Limits,
    open: HashMap<BatchKey, Open<T>>,
    arrivals: HashMap<BatchKey, Arrivals>,
}

impl<T> Batcher<T> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            arrivals: HashMap::new(),
        }
    }

    /// Notes the arrival of a job of `key`; whether a batch it opens should
    /// wait for others.
    fn worth_waiting(&mut self, key: &BatchKey, max_wait: Duration, now: Instant) -> bool {
        if self.arrivals.len() > MAX_KEYS {
            self.arrivals
                .retain(|_, a| now.saturating_duration_since(a.last) < FORGET_AFTER);
            // Still too many live keys: forget them all (they wait, as
            // unknown keys do), so that pruning stays rare on this path.
            if self.arrivals.len() > MAX_KEYS / 2 {
                self.arrivals.clear();
            }
        }
        match self.arrivals.get_mut(key) {
            Some(arrivals) => {
                arrivals.arrived(now);
                arrivals.expects_another_within(max_wait)
            }
            None => {
                let first = Arrivals {
                    last: now,
                    mean_gap: None,
                };
                self.arrivals.insert(key.clone(), first);
                true
            }
        }
    }

    /// Adds a job; returns the batches this filled. A job that would push
    /// its batch past the token limit flushes the batch first and opens
    /// the next one.
    pub fn push(
        &mut self,
        key: BatchKey,
        item: T,
        tokens: u64,
        max_wait: Duration,
        now: Instant,
    ) -> Vec<Flushed<T>> {
        let mut flushed = Vec::new();
        let worth_waiting = self.worth_waiting(&key, max_wait, now);
        if let Some(open) = self.open.get(&key) {
            if !open.items.is_empty() && open.tokens + tokens > self.limits.max_tokens {
                if let Some(open) = self.open.remove(&key) {
                    flushed.push(Flushed {
                        key: key.clone(),
                        items: open.items,
                        reason: FlushReason::Tokens,
                        opened: open.opened,
                    });
                }
            }
        }
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            items: Vec::new(),
            tokens: 0,
            opened: now,
            due: now + max_wait,
        });
        open.items.push(item);
        open.tokens += tokens;
        let reason = if open.items.len() >= self.limits.max_jobs {
            Some(FlushReason::Size)
        } else if open.tokens >= self.limits.max_tokens {
            Some(FlushReason::Tokens)
        } else if open.items.len() == 1 && !worth_waiting {
            Some(FlushReason::Idle)
        } else {
            None
        };
        if let Some(reason) = reason {
            if let Some(open) = self.open.remove(&key) {
                flushed.push(Flushed {
                    key,
                    items: open.items,
                    reason,
                    opened: open.opened,
                });
            }
        }
        flushed
    }

    /// When the oldest open batch is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|o| o.due).min()
    }

    /// Removes and returns the batches due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Flushed<T>> {
        let due: Vec<BatchKey> = self
            .open
            .iter()
            .filter(|(_, o)| o.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| {
                self.open.remove(&key).map(|o| Flushed {
                    key,
                    items: o.items,
                    reason: FlushReason::Wait,
                    opened: o.opened,
                })
            })
            .collect()
    }

    /// Removes and returns every open batch.
    pub fn drain(&mut self) -> Vec<Flushed<T>> {
        self.open
            .drain()
            .map(|(key, o)| Flushed {
                key,
                items: o.items,
                reason: FlushReason::Shutdown,
                opened: o.opened,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// A job on its way into a batch.
pub struct Incoming<T> {
    pub key: BatchKey,
    pub item: T,
    pub tokens: u64,
    pub max_wait: Duration,
}

/// Feeds `rx` through a batcher into `flush` until `rx` closes, then
/// flushes what is still open (reason `Shutdown`).
pub async fn run<T, F, Fut>(limits: Limits, mut rx: mpsc::Receiver<Incoming<T>>, mut flush: F)
where
    F: FnMut(Flushed<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut batcher = Batcher::new(limits);
    loop {
        let due = batcher.next_due();
        tokio::select! {
            incoming = rx.recv() => match incoming {
                Some(i) => {
                    for batch in batcher.push(i.key, i.item, i.tokens, i.max_wait, Instant::now()) {
                        flush(batch).await;
                    }
                }
                None => break,
            },
            () = sleep_until(due) => {
                for batch in batcher.take_due(Instant::now()) {
                    flush(batch).await;
                }
            }
        }
    }
    for batch in batcher.drain() {
        flush(batch).await;
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{Endpoint, Priority};

    fn key(prefix: &str) -> BatchKey {
        BatchKey {
            endpoint: Endpoint::Completions,
            model: "m".into(),
            priority: Priority::Standard,
            prefix_hash: prefix.into(),
            params: String::new(),
            deadline: false,
            stream: false,
        }
    }

    const LIMITS: Limits = Limits {
        max_jobs: 3,
        max_tokens: 100,
    };
    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test(start_paused = true)]
    async fn flushes_when_full() {
        let mut b = Batcher::new(LIMITS);
        let now = Instant::now();
        assert!(b.push(key("a"), 1, 1, WAIT, now).is_empty());
        assert!(b.push(key("b"), 2, 1, WAIT, now).is_empty());
        assert!(b.push(key("a"), 3, 1, WAIT, now).is_empty());
        let full = b.push(key("a"), 4, 1, WAIT, now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].items, vec![1, 3, 4]);
        assert_eq!(full[0].reason, FlushReason::Size);
        // The other key is still open.
        assert_eq!(b.drain().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_before_the_token_limit_is_passed() {
        let mut b = Batcher::new(LIMITS);
        let now = Instant::now();
        assert!(b.push(key("a"), 1, 60, WAIT, now).is_empty());
        let flushed = b.push(key("a"), 2, 60, WAIT, now);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].items, vec![1]);
        assert_eq!(flushed[0].reason, FlushReason::Tokens);
        // A single job above the limit goes alone, at once.
        let big = b.push(key("c"), 3, 500, WAIT, now);
        assert_eq!(big[0].items, vec![3]);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_max_wait_from_the_first_job() {
        let mut b = Batcher::new(LIMITS);
        let start = Instant::now();
        b.push(key("a"), 1, 1, WAIT, start);
        tokio::time::advance(Duration::from_millis(30)).await;
        b.push(key("a"), 2, 1, WAIT, Instant::now());
        assert_eq!(b.next_due(), Some(start + WAIT));
        assert!(b.take_due(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(20)).await;
        let due = b.take_due(Instant::now());
        assert_eq!(due[0].items, vec![1, 2]);
        assert_eq!(due[0].reason, FlushReason::Wait);
        assert!(b.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_goes_out_at_once_when_no_other_is_expected_in_time() {
        let mut b = Batcher::new(LIMITS);
        // Jobs 100 ms apart against a 50 ms wait: after the first (its
        // key unknown, it waits), each goes out alone at once.
        assert!(b.push(key("a"), 0, 1, WAIT, Instant::now()).is_empty());
        for i in 1..5 {
            tokio::time::advance(Duration::from_millis(100)).await;
            let mut flushed = b.take_due(Instant::now());
            let pushed = b.push(key("a"), i, 1, WAIT, Instant::now());
            assert_eq!(pushed.len(), 1, "job {i}");
            assert_eq!(
                (pushed[0].items.clone(), pushed[0].reason),
                (vec![i], FlushReason::Idle)
            );
            flushed.extend(pushed);
            assert!(b.is_empty());
        }
        // The load rises: jobs 5 ms apart. Once the mean gap is under the
        // wait, batches wait and fill again.
        let mut reasons = Vec::new();
        for i in 5..40 {
            tokio::time::advance(Duration::from_millis(5)).await;
            reasons.extend(b.take_due(Instant::now()).into_iter().map(|f| f.reason));
            reasons.extend(
                b.push(key("a"), i, 1, WAIT, Instant::now())
                    .into_iter()
                    .map(|f| f.reason),
            );
        }
        assert_eq!(reasons.last(), Some(&FlushReason::Size), "{reasons:?}");
        assert!(reasons.iter().filter(|r| **r == FlushReason::Size).count() >= 8);
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_flushes_on_time_and_at_close() {
        let (tx, rx) = mpsc::channel(16);
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let driver = run(LIMITS, rx, move |f: Flushed<u32>| {
            let out_tx = out_tx.clone();
            async move {
                let _ = out_tx.send((Instant::now(), f.items, f.reason));
            }
        });
        let started = Instant::now();
        let feed = async move {
            let incoming = |item, wait| Incoming {
                key: key("a"),
                item,
                tokens: 1,
                max_wait: wait,
            };
            tx.send(incoming(1, WAIT)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(incoming(2, Duration::from_secs(60))).await.unwrap();
            // Dropping the sender closes the driver, which flushes job 2.
        };
        tokio::join!(driver, feed);
        let (at, items, reason) = out.recv().await.unwrap();
        assert_eq!((items, reason), (vec![1], FlushReason::Wait));
        assert_eq!(at - started, WAIT);
        let (_, items, reason) = out.recv().await.unwrap();
        assert_eq!((items, reason), (vec![2], FlushReason::Shutdown));
    }
}
