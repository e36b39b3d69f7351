//! What the scenarios (and the RabbitMQ-only tests) do again and again:
//! publishing jobs that must be confirmed, waiting for deliveries, for
//! silence and for a depth.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sluice_core::Priority;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Delivery, DeliveryStream, JobQueue, Outgoing, Source};

/// The longest wait for a delivery, a stream's end or a depth.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How long a stream must stay silent to count as quiet: well past a
/// broker's round trip.
pub const QUIET: Duration = Duration::from_millis(300);

/// A job with body `body` and the headers `job-id: job-{body}` and
/// `tenant: acme`.
pub fn outgoing(priority: Priority, body: &str) -> Outgoing {
    let mut headers = BTreeMap::new();
    headers.insert("job-id".to_owned(), format!("job-{body}"));
    headers.insert("tenant".to_owned(), "acme".to_owned());
    Outgoing {
        priority,
        body: Bytes::copy_from_slice(body.as_bytes()),
        headers,
    }
}

/// Jobs of `priority`, one per body.
pub fn jobs(priority: Priority, bodies: &[String]) -> Vec<Outgoing> {
    bodies.iter().map(|b| outgoing(priority, b)).collect()
}

/// Bodies `{prefix}0`, `{prefix}1`, …
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Publishes `messages`; each must be confirmed, and answered in order.
pub async fn publish_ok(queue: &impl JobQueue, messages: Vec<Outgoing>) {
    let n = messages.len();
    let results = queue.publish(messages).await;
    assert_eq!(results.len(), n, "one result per message");
    for (i, result) in results.into_iter().enumerate() {
        assert!(result.is_ok(), "message {i} not confirmed: {result:?}");
    }
}

/// A consumer of `source` holding at most `prefetch` deliveries, until its
/// stream is dropped (or the queue closed).
pub async fn consumer(queue: &impl JobQueue, source: Source, prefetch: u16) -> DeliveryStream {
    queue
        .consume(source, prefetch, CancellationToken::new())
        .await
        .expect("consuming")
}

/// The next delivery, which must come within [`PATIENCE`].
pub async fn next(stream: &mut DeliveryStream) -> Delivery {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no delivery within {PATIENCE:?}"),
    }
}

/// The next `n` deliveries.
pub async fn take(stream: &mut DeliveryStream, n: usize) -> Vec<Delivery> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next(stream).await);
    }
    got
}

/// Whether the stream yields nothing for [`QUIET`].
pub async fn quiet(stream: &mut DeliveryStream) -> bool {
    tokio::time::timeout(QUIET, stream.next()).await.is_err()
}

/// Whether the stream ends within [`PATIENCE`].
pub async fn ends(stream: &mut DeliveryStream) -> bool {
    matches!(
        tokio::time::timeout(PATIENCE, stream.next()).await,
        Ok(None)
    )
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.body).into_owned()
}

pub fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(body).collect()
}

/// A header of the delivery.
pub fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a str> {
    d.headers.get(name).map(String::as_str)
}

/// Acks every delivery; each ack must succeed.
pub async fn ack_all(deliveries: impl IntoIterator<Item = Delivery>) {
    for d in deliveries {
        d.ack().await.expect("acked");
    }
}

/// Waits until `source` holds `want` ready messages (a broker counts
/// asynchronously after an ack or a nack), for at most [`PATIENCE`].
pub async fn await_depth(queue: &impl JobQueue, source: Source, want: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let depth = queue.depth(source).await.expect("depth");
        if depth == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "depth of {source:?} is {depth}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
