//! The job ends Sluice announces on its completion channel (`P:done`):
//! each message holds the ids of the jobs one script call ended, separated
//! by spaces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fred::prelude::*;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Messages the subscription may hold unread before it drops the oldest
/// (and [`Completions::missed`] counts them): room for a burst of tens of
/// thousands of ends while the counter is busy.
const BACKLOG: usize = 1 << 17;

/// Counts, per job id, the ends announced since it started: a job that
/// ended twice counts 2.
pub struct Completions {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    ended: Arc<AtomicUsize>,
    missed: Arc<AtomicUsize>,
    stop: CancellationToken,
    tasks: TaskTracker,
    subscriber: fred::clients::SubscriberClient,
}

impl Completions {
    /// Subscribes to `{prefix}:done` on the Redis at `redis_url`.
    pub async fn start(redis_url: &str, prefix: &str) -> Self {
        let config =
            Config::from_url(redis_url).unwrap_or_else(|e| panic!("Redis URL {redis_url:?}: {e}"));
        let subscriber = Builder::from_config(config)
            .with_performance_config(|p| p.broadcast_channel_capacity = BACKLOG)
            .build_subscriber_client()
            .unwrap_or_else(|e| panic!("Redis subscriber: {e}"));
        subscriber
            .init()
            .await
            .unwrap_or_else(|e| panic!("Redis at {redis_url}: {e}"));
        let mut messages = subscriber.message_rx();
        subscriber
            .subscribe(format!("{prefix}:done"))
            .await
            .unwrap_or_else(|e| panic!("subscribe to {prefix}:done: {e}"));
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let ended = Arc::new(AtomicUsize::new(0));
        let missed = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (sink, total, lost, until) = (
            Arc::clone(&counts),
            Arc::clone(&ended),
            Arc::clone(&missed),
            stop.clone(),
        );
        tasks.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = until.cancelled() => break,
                    m = messages.recv() => m,
                };
                match message {
                    Ok(m) => {
                        let ids = m.value.as_str().unwrap_or_default().into_owned();
                        let mut counts = sink.lock().unwrap_or_else(PoisonError::into_inner);
                        for id in ids.split(' ').filter(|id| !id.is_empty()) {
                            *counts.entry(id.to_owned()).or_insert(0) += 1;
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let n = usize::try_from(n).unwrap_or(usize::MAX);
                        lost.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        tasks.close();
        Self {
            counts,
            ended,
            missed,
            stop,
            tasks,
            subscriber,
        }
    }

    /// Job ends announced so far (a job that ended twice counts twice).
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::Relaxed)
    }

    /// Messages this counter missed because it fell behind: while not
    /// zero, its counts are short by an unknown number of ends.
    pub fn missed(&self) -> usize {
        self.missed.load(Ordering::Relaxed)
    }

    /// Ends announced so far, per job id.
    pub fn counts(&self) -> HashMap<String, u32> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.wait().await;
        let _ = self.subscriber.quit().await;
    }
}
