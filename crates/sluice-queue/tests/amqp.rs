//! AmqpQueue against a real RabbitMQ: amqp://guest:guest@127.0.0.1:5672/%2f,
//! or `SLUICE_AMQP_URL`. Each test works under its own random prefix and
//! deletes its topology at the end, passed or failed.

// Test code: helpers outside #[test] fns may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use sluice_core::Priority;
use sluice_queue::amqp::teardown;
use sluice_queue::{AmqpQueue, JobQueue, Outgoing, QueueError, Source};
use tokio_util::sync::CancellationToken;

mod proxy;
mod support;

use support::*;

#[tokio::test]
async fn publishes_and_consumes_bodies_and_headers() {
    with_queue(3, |queue| async move {
        assert!(queue.is_ready().await);
        let bodies: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
        publish_ok(
            &queue,
            bodies
                .iter()
                .map(|b| outgoing(Priority::Standard, b))
                .collect(),
        )
        .await;
        publish_ok(&queue, vec![outgoing(Priority::Interactive, "fast")]).await;

        let stop = CancellationToken::new();
        let mut stream = queue
            .consume(Source::Jobs(Priority::Standard), 8, stop.clone())
            .await
            .unwrap();
        for expected in &bodies {
            let d = next(&mut stream).await;
            assert_eq!(&body(&d), expected);
            assert_eq!(d.headers.get("job-id"), Some(&format!("job-{expected}")));
            assert_eq!(d.headers.get("tenant").map(String::as_str), Some("acme"));
            assert!(!d.redelivered);
            assert_eq!(d.delivery_count, 0);
            d.ack().await.unwrap();
        }
        assert!(quiet(&mut stream).await);

        let mut fast = queue
            .consume(Source::Jobs(Priority::Interactive), 1, stop.clone())
            .await
            .unwrap();
        let d = next(&mut fast).await;
        assert_eq!(body(&d), "fast");
        d.ack().await.unwrap();
        await_depth(&queue, Source::Jobs(Priority::Standard), 0).await;
        stop.cancel();
        assert!(stream.next().await.is_none());
        assert!(fast.next().await.is_none());
        queue.close().await;
        assert!(!queue.is_ready().await);
    })
    .await;
}

#[tokio::test]
async fn ack_removes_and_requeue_redelivers() {
    with_queue(5, |queue| async move {
        let source = Source::Jobs(Priority::Batch);
        publish_ok(&queue, vec![outgoing(Priority::Batch, "again")]).await;
        let mut stream = queue
            .consume(source, 1, CancellationToken::new())
            .await
            .unwrap();
        let first = next(&mut stream).await;
        assert!(!first.redelivered);
        assert_eq!(first.delivery_count, 0);
        first.requeue().await.unwrap();

        let second = next(&mut stream).await;
        assert_eq!(body(&second), "again");
        assert!(second.redelivered);
        assert_eq!(second.delivery_count, 1);
        second.ack().await.unwrap();
        assert!(quiet(&mut stream).await);
        await_depth(&queue, source, 0).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn dead_letter_lands_in_the_dead_letter_queue() {
    with_queue(5, |queue| async move {
        publish_ok(&queue, vec![outgoing(Priority::Standard, "poison")]).await;
        let mut stream = queue
            .consume(
                Source::Jobs(Priority::Standard),
                1,
                CancellationToken::new(),
            )
            .await
            .unwrap();
        next(&mut stream).await.dead_letter().await.unwrap();

        await_depth(&queue, Source::DeadLetters, 1).await;
        await_depth(&queue, Source::Jobs(Priority::Standard), 0).await;
        let mut dead = queue
            .consume(Source::DeadLetters, 1, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut dead).await;
        assert_eq!(body(&d), "poison");
        assert_eq!(
            d.headers.get("job-id").map(String::as_str),
            Some("job-poison")
        );
        assert_eq!(
            d.headers.get("x-first-death-reason").map(String::as_str),
            Some("rejected")
        );
        let queue_name = queue.topology().queue(Priority::Standard);
        assert_eq!(d.headers.get("x-first-death-queue"), Some(&queue_name));
        d.ack().await.unwrap();
        await_depth(&queue, Source::DeadLetters, 0).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_delivery_limit_dead_letters_a_message_requeued_too_often() {
    with_queue(1, |queue| async move {
        publish_ok(&queue, vec![outgoing(Priority::Standard, "flaky")]).await;
        let mut stream = queue
            .consume(
                Source::Jobs(Priority::Standard),
                1,
                CancellationToken::new(),
            )
            .await
            .unwrap();
        // Observed on RabbitMQ 3.10: x-delivery-limit = 1 allows two
        // deliveries; the second one returned is dead-lettered.
        let first = next(&mut stream).await;
        assert_eq!((first.redelivered, first.delivery_count), (false, 0));
        first.requeue().await.unwrap();
        let second = next(&mut stream).await;
        assert_eq!((second.redelivered, second.delivery_count), (true, 1));
        second.requeue().await.unwrap();
        assert!(quiet(&mut stream).await, "no third delivery");

        await_depth(&queue, Source::DeadLetters, 1).await;
        let mut dead = queue
            .consume(Source::DeadLetters, 1, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut dead).await;
        assert_eq!(body(&d), "flaky");
        assert_eq!(
            d.headers.get("x-first-death-reason").map(String::as_str),
            Some("delivery_limit")
        );
        let exchange = queue.topology().jobs_exchange();
        assert_eq!(d.headers.get("x-first-death-exchange"), Some(&exchange));
        assert_eq!(
            d.headers.get("job-id").map(String::as_str),
            Some("job-flaky")
        );
        // In the dead-letter queue it is a first delivery again.
        assert_eq!((d.redelivered, d.delivery_count), (false, 0));
        d.ack().await.unwrap();
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn depth_counts_ready_messages_only() {
    with_queue(3, |queue| async move {
        let source = Source::Jobs(Priority::Interactive);
        assert_eq!(queue.depth(source).await.unwrap(), 0);
        publish_ok(
            &queue,
            (0..5)
                .map(|i| outgoing(Priority::Interactive, &i.to_string()))
                .collect(),
        )
        .await;
        await_depth(&queue, source, 5).await;
        let mut stream = queue
            .consume(source, 2, CancellationToken::new())
            .await
            .unwrap();
        let a = next(&mut stream).await;
        let _b = next(&mut stream).await;
        assert!(quiet(&mut stream).await, "prefetch 2 holds back the third");
        await_depth(&queue, source, 3).await;
        a.ack().await.unwrap();
        let _c = next(&mut stream).await;
        await_depth(&queue, source, 2).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn stop_cancels_the_consumer_and_held_deliveries_still_settle() {
    with_queue(3, |queue| async move {
        let source = Source::Jobs(Priority::Standard);
        publish_ok(
            &queue,
            (0..6)
                .map(|i| outgoing(Priority::Standard, &i.to_string()))
                .collect(),
        )
        .await;
        let stop = CancellationToken::new();
        let mut stream = queue.consume(source, 3, stop.clone()).await.unwrap();
        let held = next(&mut stream).await;
        // Let the broker fill the prefetch buffer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(matches!(end, Ok(None)), "the stream ends on stop");
        held.ack().await.unwrap();
        // The two buffered but never handed out went back to the queue.
        await_depth(&queue, source, 5).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_delivery_dropped_unsettled_comes_back_when_its_channel_goes() {
    with_queue(3, |queue| async move {
        let source = Source::Jobs(Priority::Standard);
        publish_ok(&queue, vec![outgoing(Priority::Standard, "dropped")]).await;
        let mut stream = queue
            .consume(source, 1, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut stream).await;
        drop(stream);
        await_depth(&queue, source, 0).await;
        // The last handle on the consumer's channel: it closes.
        drop(d);
        await_depth(&queue, source, 1).await;
        let mut stream = queue
            .consume(source, 1, CancellationToken::new())
            .await
            .unwrap();
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "dropped");
        assert!(d.redelivered);
        assert_eq!(d.delivery_count, 1);
        d.ack().await.unwrap();
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn publishes_two_thousand_at_once() {
    with_queue(3, |queue| async move {
        let messages: Vec<Outgoing> = (0..2000)
            .map(|i| outgoing(Priority::Batch, &format!("bulk-{i}")))
            .collect();
        let started = Instant::now();
        publish_ok(&queue, messages).await;
        eprintln!("2000 confirmed in {:?}", started.elapsed());
        await_depth(&queue, Source::Jobs(Priority::Batch), 2000).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_unroutable_message_is_reported() {
    with_queue(3, |queue| async move {
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
        await_depth(&queue, Source::Jobs(Priority::Standard), 1 + 266).await;
        queue.close().await;
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
