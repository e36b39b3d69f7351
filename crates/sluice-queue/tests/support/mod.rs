//! Helpers shared by the RabbitMQ test files: a queue under a random
//! prefix whose topology is deleted afterwards, and waiting on deliveries
//! and depths.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use sluice_core::Priority;
use sluice_queue::amqp::teardown;
use sluice_queue::{AmqpQueue, Delivery, DeliveryStream, JobQueue, Outgoing, Source, Topology};

pub fn url() -> String {
    std::env::var("SLUICE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A topology under a random prefix, one message per job (no packs).
pub fn topology(delivery_limit: u32) -> Topology {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Topology::new(format!("test-{random:016x}"), delivery_limit).with_pack_jobs(1)
}

/// Runs `test` with a connected queue that sends one message per job,
/// then tears the topology down.
pub async fn with_queue<F, Fut>(delivery_limit: u32, test: F)
where
    F: FnOnce(AmqpQueue) -> Fut,
    Fut: Future<Output = ()>,
{
    with_topology(topology(delivery_limit), test).await;
}

/// Runs `test` with a queue connected on `topology`, then tears it down.
pub async fn with_topology<F, Fut>(topology: Topology, test: F)
where
    F: FnOnce(AmqpQueue) -> Fut,
    Fut: Future<Output = ()>,
{
    let queue = AmqpQueue::connect(&url(), topology.clone())
        .await
        .expect("connect");
    let outcome = AssertUnwindSafe(test(queue)).catch_unwind().await;
    teardown(&url(), &topology).await.expect("teardown");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

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

pub async fn publish_ok(queue: &AmqpQueue, messages: Vec<Outgoing>) {
    let n = messages.len();
    let results = queue.publish(messages).await;
    assert_eq!(results.len(), n);
    for result in results {
        result.expect("confirmed");
    }
}

pub async fn next(stream: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a delivery in time")
        .expect("stream still open")
}

/// The next `n` deliveries (each within `next`'s 5 s).
pub async fn take(stream: &mut DeliveryStream, n: usize) -> Vec<Delivery> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next(stream).await);
    }
    got
}

/// Bodies `{prefix}0`, `{prefix}1`, …
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

pub async fn quiet(stream: &mut DeliveryStream) -> bool {
    tokio::time::timeout(Duration::from_millis(300), stream.next())
        .await
        .is_err()
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8(d.body.to_vec()).expect("utf-8 body")
}

/// Polls `depth` until it reads `want` (quorum queues count asynchronously
/// after an ack or a nack).
pub async fn await_depth(queue: &AmqpQueue, source: Source, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let depth = queue.depth(source).await.expect("depth");
        if depth == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "depth of {source:?} is {depth}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
