//! Waiting at start for a dependency that is not up yet.
//!
//! A role started before RabbitMQ, Redis or PostgreSQL (a node restarting,
//! Redis loading its append-only file, a cluster coming up in any order)
//! does not exit: it tries again with backoff, says on each try what it
//! waits for and why, and meanwhile answers `/healthz` 200 and `/readyz`
//! 503 ([`super::health`]). On Kubernetes an exit would be a crash loop
//! whose growing back-off keeps the pod down for minutes after the
//! dependency is back.
//!
//! Only what may pass is waited on: a refused connection, a timeout, a
//! server that answers `LOADING` or is starting up. A bad URL or an
//! unmigrated database is the same on every try, and fails at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use super::health::Health;

/// The waits between tries: 250 ms after the first failure, doubling, at
/// most 5 s, so that a role is up within seconds of its dependency;
/// jittered, so that a fleet restarted together does not knock together.
pub const START_WAITS: Backoff =
    Backoff::exponential(Duration::from_millis(250), Duration::from_secs(5)).with_full_jitter();

/// Why one try failed.
pub enum NotUp {
    /// It may pass: try again.
    Yet(anyhow::Error),
    /// It will not: give up.
    Ever(anyhow::Error),
}

impl NotUp {
    /// `e`, waited on when `transient`.
    pub fn from(e: impl Into<anyhow::Error>, transient: bool) -> Self {
        if transient {
            Self::Yet(e.into())
        } else {
            Self::Ever(e.into())
        }
    }
}

/// Start-up was stopped (SIGTERM) while it waited: not a failure.
#[derive(Debug, thiserror::Error)]
#[error("stopped while waiting for {0}")]
pub struct Stopped(pub &'static str);

/// Tries `attempt` until it succeeds, fails for good, or `stop` is
/// cancelled ([`Stopped`]). `dependency` (`RabbitMQ`, `Redis`,
/// `PostgreSQL`) and `at` (its address, without password) name it in the
/// log and in `health`.
pub async fn until_up<T, F, Fut>(
    dependency: &'static str,
    at: impl Display,
    health: &Health,
    stop: &CancellationToken,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, NotUp>>,
{
    health.waiting_for(Some(dependency));
    let mut waits = START_WAITS.delays();
    let mut failures = 0_u32;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Err(Stopped(dependency).into()),
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(up) => {
                if failures > 0 {
                    tracing::info!(dependency, %at, failures, "{dependency} is up");
                }
                health.waiting_for(None);
                return Ok(up);
            }
            Err(NotUp::Ever(e)) => return Err(e),
            Err(NotUp::Yet(e)) => {
                failures = failures.saturating_add(1);
                let wait = waits.wait();
                let error = format!("{e:#}");
                tracing::warn!(
                    dependency, %at, %error, failures, retry_in = ?wait,
                    "waiting for {dependency}"
                );
                tokio::select! {
                    () = stop.cancelled() => return Err(Stopped(dependency).into()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Whether `result` is a start-up stopped by a signal (a clean exit).
pub fn was_stopped(result: &anyhow::Result<()>) -> bool {
    result.as_ref().err().is_some_and(|e| e.is::<Stopped>())
}

/// A role's outcome: a start-up stopped by a signal is a clean exit,
/// logged as such; anything else as it was.
pub fn stopped_is_clean(role: &str, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if was_stopped(&result) {
        tracing::info!("{role} stopped while starting");
        return Ok(());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn tries_again_while_not_yet_and_gives_up_at_once_on_a_lasting_error() {
        let health = Health::default();
        let stop = CancellationToken::new();
        let tries = Cell::new(0);
        let up: u32 = until_up("Redis", "redis://x", &health, &stop, || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                match n {
                    1..=3 => Err(NotUp::Yet(anyhow::anyhow!("LOADING"))),
                    _ => Ok(n),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(up, 4);

        tries.set(0);
        let lasting: anyhow::Result<()> = until_up("PostgreSQL", "pg", &health, &stop, || {
            tries.set(tries.get() + 1);
            async { Err(NotUp::Ever(anyhow::anyhow!("not migrated"))) }
        })
        .await;
        assert_eq!(tries.get(), 1);
        assert!(lasting.unwrap_err().to_string().contains("not migrated"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_ends_the_wait_as_a_clean_stop() {
        let health = Health::default();
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        let waited: anyhow::Result<()> = until_up("RabbitMQ", "amqp://x", &health, &stop, || {
            cancel.cancel();
            async { Err(NotUp::Yet(anyhow::anyhow!("refused"))) }
        })
        .await;
        assert!(was_stopped(&waited), "{waited:?}");
    }
}
