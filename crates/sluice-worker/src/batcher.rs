//! Micro-batching: pending jobs grouped by batch key, each group flushed
//! when it is full (jobs), heavy (estimated prompt tokens) or old enough
//! (the max wait of its priority class, counted from its first job).

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
    Shutdown,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Tokens => "tokens",
            Self::Wait => "wait",
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

pub struct Batcher<T> {
    limits: Limits,
    open: HashMap<BatchKey, Open<T>>,
}

impl<T> Batcher<T> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
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
