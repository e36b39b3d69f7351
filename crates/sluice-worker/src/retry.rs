//! Store calls that ride out a short outage: a worker never acks what it
//! could not store, so it retries for a while and then gives the message
//! back to the broker. Only an outage is waited out: an error that would
//! come back on every try (a corrupt record, a conflict) returns at once.

use std::future::Future;
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_store::StoreError;

/// How long a worker keeps retrying a store call before giving up on it.
pub const STORE_RETRY_FOR: Duration = Duration::from_secs(30);

/// The waits between tries: short at first (a blip), at most 2 s so that a
/// store that comes back is used again soon.
const STORE_BACKOFF: Backoff =
    Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2));

/// Runs `call` until it succeeds, fails with an error that is not
/// transient, or `STORE_RETRY_FOR` has passed.
pub async fn with_store_retry<T, F, Fut>(what: &str, call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    STORE_BACKOFF
        .retry(
            STORE_RETRY_FOR,
            call,
            StoreError::is_transient,
            |e, wait| {
                tracing::warn!(error = %e, what, ?wait, "store unavailable; retrying");
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn tries_until_it_returns(error: fn() -> StoreError) -> (u32, Duration) {
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let result: Result<(), _> = with_store_retry("test", || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err(error()) }
        })
        .await;
        assert!(result.is_err());
        (tries.load(Ordering::SeqCst), start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_retried_for_thirty_seconds_then_given_up() {
        let (tries, took) =
            tries_until_it_returns(|| StoreError::Unavailable("redis down".into())).await;
        assert!(tries > 10, "{tries} tries");
        assert!(took < STORE_RETRY_FOR, "{took:?}");
        assert!(took > STORE_RETRY_FOR - Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_error_returns_at_once() {
        for error in [
            || StoreError::Corrupt("bad hash".into()),
            || StoreError::Conflict("taken".into()),
            || StoreError::NotFound("gone".into()),
        ] {
            let (tries, took) = tries_until_it_returns(error).await;
            assert_eq!((tries, took), (1, Duration::ZERO));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_blip_is_ridden_out() {
        let tries = AtomicU32::new(0);
        let answer = with_store_retry("test", || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(StoreError::Unavailable("blip".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 2);
    }
}
