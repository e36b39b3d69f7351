//! Closed-loop users: each sends a request, waits for its answer, thinks,
//! and sends the next, taking requests from the workload in order. A phase
//! runs a warm-up (not measured: the rate-limit window fills, the caches
//! fill) and then the measured time; requests sent during the measured time
//! give the latencies and the error rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::clients::{Client, Outcome};
use super::workload::Request;

/// How a phase runs.
#[derive(Clone, Debug)]
pub struct Phase {
    pub users: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Mean think time between an answer and the next request (uniform
    /// between half and one and a half of it).
    pub think: Duration,
    /// A request not answered by then counts as an error.
    pub timeout: Duration,
    /// The model the requests name.
    pub model: String,
    /// How long a deferrable request may wait for its answer.
    pub deferrable_deadline: Duration,
}

/// What a phase measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Answer times of the requests sent in the measured time, sorted.
    pub latencies: Vec<Duration>,
    /// Of those, the ones not answered.
    pub errors: usize,
    /// Why, for the first few.
    pub error_samples: Vec<String>,
    /// Every request sent, warm-up included.
    pub sent: usize,
    /// Of those, the ones answered.
    pub answered: usize,
    /// From the first request to the last answer.
    pub wall: Duration,
    /// The workload ran out before the phase ended.
    pub exhausted: bool,
    /// The requests answered, by what they could cost at best.
    pub answered_by: Classes,
    /// Deferrable requests answered, and not.
    pub deferred: usize,
    pub deferred_failed: usize,
}

/// Answered requests by the least they could cost: an exact repeat
/// nothing (the cache), a deferrable miss the batch price, the rest the
/// standard price.
#[derive(Clone, Copy, Debug, Default)]
pub struct Classes {
    pub repeats: usize,
    pub deferrable: usize,
    pub interactive: usize,
}

impl Classes {
    fn add(&mut self, request: &Request) {
        match (request.kind, request.deferrable) {
            (super::workload::Kind::Repeat, _) => self.repeats += 1,
            (_, true) => self.deferrable += 1,
            (_, false) => self.interactive += 1,
        }
    }

    /// The floor's cost over these requests, as a share of what they cost
    /// at the standard price each: repeats free, deferrable misses at half.
    pub fn floor_share(&self) -> f64 {
        let all = self.repeats + self.deferrable + self.interactive;
        if all == 0 {
            return 0.0;
        }
        (self.interactive as f64 + self.deferrable as f64 / 2.0) / all as f64
    }
}

impl Measured {
    pub fn count(&self) -> usize {
        self.latencies.len() + self.errors
    }

    pub fn error_rate(&self) -> f64 {
        if self.count() == 0 {
            return 1.0;
        }
        self.errors as f64 / self.count() as f64
    }

    /// The `q` quantile of the answered requests' times (nearest rank).
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::MAX;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    error_samples: Vec<String>,
    sent: usize,
    answered: usize,
    exhausted: bool,
    answered_by: Classes,
    deferred: usize,
    deferred_failed: usize,
}

/// Runs `phase.users` users over `workload` through `client`. A user
/// waits for an interactive request's answer; a deferrable one runs in the
/// background (as an app's job queue would send it) and counts in the cost,
/// not in the latencies.
pub async fn run(client: &Client, workload: Arc<Vec<Request>>, phase: &Phase) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let measure_from = start + phase.warmup;
    let stop_at = measure_from + phase.measure;
    let tasks = TaskTracker::new();
    for user in 0..phase.users {
        let (client, workload, next, tally, phase, background) = (
            client.clone(),
            Arc::clone(&workload),
            Arc::clone(&next),
            Arc::clone(&tally),
            phase.clone(),
            tasks.clone(),
        );
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(user as u64);
            // Users arrive spread over one think time, not all at once.
            let arrive = phase.think.mul_f64(user as f64 / phase.users as f64);
            tokio::time::sleep(arrive).await;
            while Instant::now() < stop_at {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = workload.get(i) else {
                    lock(&tally).exhausted = true;
                    break;
                };
                if request.deferrable {
                    let (client, workload, tally, phase) = (
                        client.clone(),
                        Arc::clone(&workload),
                        Arc::clone(&tally),
                        phase.clone(),
                    );
                    background.spawn(async move {
                        let request = &workload[i];
                        let outcome = client
                            .call(
                                &phase.model,
                                &request.body,
                                &labels(request),
                                Some(phase.deferrable_deadline),
                                phase.deferrable_deadline,
                            )
                            .await;
                        record_deferred(&tally, request, outcome);
                    });
                } else {
                    let sent = Instant::now();
                    let outcome = client
                        .call(
                            &phase.model,
                            &request.body,
                            &labels(request),
                            None,
                            phase.timeout,
                        )
                        .await;
                    record(
                        &tally,
                        request,
                        sent >= measure_from,
                        sent.elapsed(),
                        outcome,
                    );
                }
                let think = phase.think.mul_f64(rng.gen_range(0.5..1.5));
                tokio::time::sleep_until((Instant::now() + think).min(stop_at)).await;
            }
        });
    }
    // Users stop at the phase's end; deferrable requests end in their time.
    tasks.close();
    tasks.wait().await;
    let wall = start.elapsed();
    let mut t = std::mem::take(&mut *lock(&tally));
    t.latencies.sort();
    Measured {
        latencies: t.latencies,
        errors: t.errors,
        error_samples: t.error_samples,
        sent: t.sent,
        answered: t.answered,
        wall,
        exhausted: t.exhausted,
        answered_by: t.answered_by,
        deferred: t.deferred,
        deferred_failed: t.deferred_failed,
    }
}

fn record_deferred(tally: &Mutex<Tally>, request: &Request, outcome: Outcome) {
    let mut t = lock(tally);
    t.sent += 1;
    if outcome == Outcome::Answered {
        t.answered += 1;
        t.deferred += 1;
        t.answered_by.add(request);
    } else {
        t.deferred_failed += 1;
        if let Outcome::Failed(why) = outcome {
            if t.error_samples.len() < 5 {
                t.error_samples.push(format!("deferrable: {why}"));
            }
        }
    }
}

fn record(
    tally: &Mutex<Tally>,
    request: &Request,
    measured: bool,
    took: Duration,
    outcome: Outcome,
) {
    let mut t = lock(tally);
    t.sent += 1;
    if outcome == Outcome::Answered {
        t.answered += 1;
        t.answered_by.add(request);
    }
    if !measured {
        return;
    }
    match outcome {
        Outcome::Answered => t.latencies.push(took),
        Outcome::Failed(why) => {
            t.errors += 1;
            if t.error_samples.len() < 5 {
                t.error_samples.push(why);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The labels a request carries to Sluice.
pub fn labels(request: &Request) -> Value {
    json!({"tenant": request.tenant, "feature": request.feature})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let m = Measured {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            errors: 1,
            ..Measured::default()
        };
        assert_eq!(m.quantile(0.95), Duration::from_millis(95));
        assert_eq!(m.quantile(0.5), Duration::from_millis(50));
        assert_eq!(m.quantile(1.0), Duration::from_millis(100));
        assert!((m.error_rate() - 1.0 / 101.0).abs() < 1e-12);
        assert_eq!(Measured::default().quantile(0.5), Duration::MAX);
        assert_eq!(Measured::default().error_rate(), 1.0);
    }
}
