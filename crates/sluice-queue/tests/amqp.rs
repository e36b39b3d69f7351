//! What only RabbitMQ does, beyond the queue contract (`amqp_contract.rs`):
//! returning unroutable messages, and reconnecting after the broker went
//! away. On amqp://guest:guest@127.0.0.1:5672/%2f, or `SLUICE_AMQP_URL`;
//! each test works under its own random prefix and deletes its topology at
//! the end, passed or failed.

// Test code: helpers outside #[test] fns may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use sluice_core::Priority;
use sluice_queue::amqp::teardown;
use sluice_queue::contract::{await_depth, body, next, outgoing, publish_ok};
use sluice_queue::{AmqpQueue, JobQueue, Outgoing, QueueError, Source};
use tokio_util::sync::CancellationToken;

mod proxy;
mod support;

use support::*;

#[tokio::test]
async fn an_unroutable_message_is_reported() {
    with_topology(topology(3), async move |queue| {
        // The batch queue is gone: nothing is bound to "batch" any more.
        drop_queue(&queue.topology().queue(Priority::Batch)).await;
        let results = queue
            .publish(vec![
                outgoing(Priority::Batch, "nowhere"),
                outgoing(Priority::Standard, "fine"),
            ])
            .await;
        assert!(
            matches!(results[0], Err(QueueError::Unroutable)),
            "{:?}",
            results[0]
        );
        assert!(results[1].is_ok(), "{:?}", results[1]);
        // Mixed in one batch, each return is matched to its own message.
        let mixed: Vec<Outgoing> = (0..400)
            .map(|i| {
                let priority = if i % 3 == 0 {
                    Priority::Batch
                } else {
                    Priority::Standard
                };
                outgoing(priority, &format!("mixed-{i}"))
            })
            .collect();
        let results = queue.publish(mixed).await;
        for (i, result) in results.iter().enumerate() {
            if i % 3 == 0 {
                assert!(
                    matches!(result, Err(QueueError::Unroutable)),
                    "{i}: {result:?}"
                );
            } else {
                assert!(result.is_ok(), "{i}: {result:?}");
            }
        }
        await_depth(queue, Source::Jobs(Priority::Standard), 1 + 266).await;
    })
    .await;
}

/// Deletes one queue behind the queue's back.
async fn drop_queue(name: &str) {
    let props = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let connection = lapin::Connection::connect(&url(), props).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(name, lapin::options::QueueDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "done").await.unwrap();
}

#[tokio::test]
async fn reconnects_after_the_broker_goes_away_and_comes_back() {
    let upstream = url();
    let mut proxy = proxy::Proxy::start(&upstream, None).await;
    let via_proxy = proxy.url(&upstream);
    let topology = topology(3);
    let queue = AmqpQueue::connect(&via_proxy, topology.clone())
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(async {
        let source = Source::Jobs(Priority::Standard);
        publish_ok(&queue, vec![outgoing(Priority::Standard, "before")]).await;
        let mut stream = queue
            .consume(source, 1, CancellationToken::new())
            .await
            .unwrap();
        let before = next(&mut stream).await;

        let port = proxy.port();
        proxy.stop().await;
        // The consumer's stream ends with the connection.
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(
            matches!(end, Ok(None)),
            "the stream ends when the connection is lost"
        );
        assert!(
            before.ack().await.is_err(),
            "an ack on a lost channel fails"
        );
        // During the outage a publish fails quickly and never succeeds.
        for _ in 0..3 {
            let started = Instant::now();
            let results = queue
                .publish(vec![outgoing(Priority::Standard, "during")])
                .await;
            assert!(
                matches!(results[0], Err(QueueError::Unavailable(_))),
                "{:?}",
                results[0]
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "took {:?}",
                started.elapsed()
            );
        }
        assert!(queue
            .consume(source, 1, CancellationToken::new())
            .await
            .is_err());
        assert!(!queue.is_ready().await);

        proxy = proxy::Proxy::start(&upstream, Some(port)).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let results = queue
                .publish(vec![outgoing(Priority::Standard, "after")])
                .await;
            if results[0].is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reconnection: {:?}",
                results[0]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(queue.is_ready().await);
        let mut stream = queue
            .consume(source, 1, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut stream).await;
        // "before" was unacked when its channel died: it comes back first.
        assert_eq!(body(&d), "before");
        assert!(d.redelivered);
        d.ack().await.unwrap();
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "after");
        d.ack().await.unwrap();
        queue.close().await;
    })
    .catch_unwind()
    .await;
    proxy.stop().await;
    teardown(&upstream, &topology).await.expect("teardown");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
