//! Several broker addresses (`SLUICE_AMQP_URL` as a comma-separated list
//! of a cluster's nodes): a queue whose first node is dead connects to the
//! next, and one whose node goes away moves to another within seconds.
//! Each "node" is a TCP proxy in front of the one real broker, so the test
//! never stops or restarts it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use sluice_core::Priority;
use sluice_queue::amqp::teardown;
use sluice_queue::contract::{body, next, outgoing, publish_ok};
use sluice_queue::{AmqpQueue, JobQueue, Source};
use tokio_util::sync::CancellationToken;

mod proxy;
mod support;

use support::*;

/// A URL to a port nothing listens on (bound, then released).
async fn dead_url(upstream: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let proxy = proxy::Proxy::start(upstream, Some(port)).await;
    let url = proxy.url(upstream);
    proxy.stop().await;
    url
}

#[tokio::test]
async fn a_dead_first_node_is_skipped_and_a_lost_node_is_replaced_by_the_next() {
    let upstream = url();
    let dead = dead_url(&upstream).await;
    let first = proxy::Proxy::start(&upstream, None).await;
    let second = proxy::Proxy::start(&upstream, None).await;
    let topology = topology(3);

    // The first address refuses connections: the queue uses the second.
    let urls = format!("{dead},{}", first.url(&upstream));
    let started = Instant::now();
    let queue = AmqpQueue::connect(&urls, topology.clone()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    queue.close().await;

    let urls = format!("{},{}", first.url(&upstream), second.url(&upstream));
    let queue = AmqpQueue::connect(&urls, topology.clone()).await.unwrap();
    let outcome = AssertUnwindSafe(async {
        let source = Source::Jobs(Priority::Standard);
        publish_ok(&queue, vec![outgoing(Priority::Standard, "before")]).await;

        // The node the queue is on goes away; the other still serves.
        first.stop().await;
        let stopped = Instant::now();
        let mut accepted_after = None;
        while stopped.elapsed() < Duration::from_secs(10) {
            let results = queue
                .publish(vec![outgoing(Priority::Standard, "after")])
                .await;
            if results[0].is_ok() {
                accepted_after = Some(stopped.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = accepted_after.expect("publishes accepted again through the second node");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(queue.is_ready().await);

        // Nothing lost: both messages are there, in order.
        let mut stream = queue
            .consume(source, 2, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "before");
        d.ack().await.unwrap();
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "after");
        d.ack().await.unwrap();
        queue.close().await;
    })
    .catch_unwind()
    .await;
    second.stop().await;
    teardown(&upstream, &topology).await.expect("teardown");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
