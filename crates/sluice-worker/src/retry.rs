//! Store calls that ride out a short outage: a worker never acks what it
//! could not store, so it retries for a while and then gives the message
//! back to the broker.

use std::future::Future;
use std::time::Duration;

use sluice_store::StoreError;

/// How long a worker keeps retrying a store call before giving up on it.
pub const STORE_RETRY_FOR: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs `call` until it succeeds or `STORE_RETRY_FOR` has passed.
pub async fn with_store_retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let give_up = tokio::time::Instant::now() + STORE_RETRY_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + backoff < give_up => {
                tracing::warn!(error = %e, what, "store unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}
