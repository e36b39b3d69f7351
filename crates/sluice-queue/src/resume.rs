//! Consuming a queue for as long as a role runs: a subscription that
//! fails, or whose stream ends (the connection dropped), is made again
//! after a wait, until the role stops. The worker's job and dead-letter
//! consumers and the webhooks role all consume through this one loop.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use sluice_core::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::{Delivery, JobQueue, Source};

/// The waits before subscribing again: a blip is over after the first
/// (100 ms); a broker that stays down is asked every 5 s at most, so that
/// consumers come back within seconds of it.
pub const RESUBSCRIBE: Backoff =
    Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));

/// Consumes `source` (with `prefetch`) until `stop`, handing each delivery
/// to `handle` in turn. A subscription that worked starts the waits over.
pub async fn consume_until_stopped<F, Fut>(
    queue: &dyn JobQueue,
    source: Source,
    prefetch: u16,
    stop: &CancellationToken,
    mut handle: F,
) where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut waits = RESUBSCRIBE.delays();
    while !stop.is_cancelled() {
        match queue.consume(source, prefetch, stop.clone()).await {
            Ok(mut deliveries) => {
                waits = RESUBSCRIBE.delays();
                while let Some(delivery) = deliveries.next().await {
                    handle(delivery).await;
                }
            }
            Err(e) => tracing::warn!(?source, error = %e, "cannot consume; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(waits.wait()) => {}
        }
    }
}
