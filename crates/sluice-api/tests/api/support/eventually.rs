//! Waiting for what happens just after an answer (a ledger row written
//! behind a job's end, say): a bounded poll, never a blind sleep.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 5 ms until it gives a value; panics naming `what`
/// after 5 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1_000 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen");
}
