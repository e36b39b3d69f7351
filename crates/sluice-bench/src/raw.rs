//! The broker's raw ceiling: persistent messages to a quorum queue with
//! pipelined confirms through the same `AmqpQueue` the roles use, then
//! consumed and acked one by one.

use std::time::Instant;

use bytes_body::body;
use futures::StreamExt;
use serde::Serialize;
use sluice_core::Priority;
use sluice_queue::{AmqpQueue, JobQueue, Outgoing, Source, Topology};
use tokio_util::sync::CancellationToken;

use crate::progress::Phase;

/// Messages per `publish` call; several calls are in flight at once.
const CHUNK: usize = 500;
const PUBLISHERS: usize = 4;

#[derive(Debug, Default, Serialize, Clone)]
pub struct RawCeiling {
    pub messages: usize,
    pub publish_per_s: f64,
    /// The same messages published one per call, 256 calls at once: what
    /// concurrent single-job requests can get from the broker at best.
    pub publish_single_per_s: f64,
    pub consume_per_s: f64,
}

mod bytes_body {
    /// A body the size of a typical job message.
    pub fn body(i: usize) -> Vec<u8> {
        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(400)).into_bytes()
    }
}

/// Message `i` of the measurement.
fn message(i: usize) -> Outgoing {
    Outgoing {
        priority: Priority::Standard,
        body: body(i).into(),
        headers: Default::default(),
    }
}

/// The steps of a measurement of `messages`, for its progress: each
/// message published in chunks, published alone, and consumed twice.
pub fn steps(messages: usize) -> u64 {
    4 * messages as u64
}

pub async fn ceiling(amqp_url: &str, messages: usize, phase: &Phase) -> anyhow::Result<RawCeiling> {
    // One message per publish, as the baseline is meant to be.
    let topology = Topology::new(
        format!("bench-raw-{}", ulid::Ulid::new().to_string().to_lowercase()),
        5,
    )
    .with_pack_jobs(1);
    let queue = AmqpQueue::connect(amqp_url, topology.clone()).await?;
    let result = measure(&queue, messages, phase).await;
    queue.close().await;
    sluice_queue::amqp::teardown(amqp_url, &topology).await?;
    result
}

async fn measure(queue: &AmqpQueue, messages: usize, phase: &Phase) -> anyhow::Result<RawCeiling> {
    let chunks: Vec<Vec<Outgoing>> = (0..messages)
        .map(message)
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(<[Outgoing]>::to_vec)
        .collect();
    let started = Instant::now();
    let results: Vec<Vec<Result<(), sluice_queue::QueueError>>> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let n = chunk.len() as u64;
            let confirms = queue.publish(chunk).await;
            phase.inc(n);
            confirms
        })
        .buffer_unordered(PUBLISHERS)
        .collect()
        .await;
    let publish_s = started.elapsed().as_secs_f64();
    let failed = results.iter().flatten().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} raw publishes were not confirmed");

    let started = Instant::now();
    let singles: Vec<Vec<Result<(), sluice_queue::QueueError>>> =
        futures::stream::iter(0..messages)
            .map(|i| async move {
                let confirm = queue.publish(vec![message(i)]).await;
                phase.inc(1);
                confirm
            })
            .buffer_unordered(256)
            .collect()
            .await;
    let single_s = started.elapsed().as_secs_f64();
    let failed = singles.iter().flatten().filter(|r| r.is_err()).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} single raw publishes were not confirmed"
    );

    let stop = CancellationToken::new();
    let mut deliveries = queue
        .consume(Source::Jobs(Priority::Standard), 1000, stop.clone())
        .await?;
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < 2 * messages {
        let next = tokio::time::timeout(crate::PHASE_LIMIT, deliveries.next()).await?;
        let Some(delivery) = next else {
            anyhow::bail!("the raw consumer stopped after {consumed} messages");
        };
        delivery.ack().await?;
        consumed += 1;
        phase.inc(1);
    }
    let consume_s = started.elapsed().as_secs_f64();
    // Cancel the consumer at the broker before the connection closes.
    stop.cancel();
    while deliveries.next().await.is_some() {}
    Ok(RawCeiling {
        messages,
        publish_per_s: messages as f64 / publish_s,
        publish_single_per_s: messages as f64 / single_s,
        consume_per_s: 2.0 * messages as f64 / consume_s,
    })
}
