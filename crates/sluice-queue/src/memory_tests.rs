use std::time::Duration;

use futures::StreamExt;
use sluice_core::Priority;

use super::*;

fn queue(limit: u32) -> MemoryQueue {
    MemoryQueue::new(Topology::new("mem", limit))
}

fn msg(priority: Priority, body: &str) -> Outgoing {
    let mut headers = BTreeMap::new();
    headers.insert("job-id".to_owned(), body.to_owned());
    Outgoing {
        priority,
        body: Bytes::copy_from_slice(body.as_bytes()),
        headers,
    }
}

async fn publish(q: &MemoryQueue, priority: Priority, bodies: &[&str]) {
    let results = q
        .publish(bodies.iter().map(|b| msg(priority, b)).collect())
        .await;
    assert_eq!(results.len(), bodies.len());
    assert!(results.iter().all(Result::is_ok));
}

async fn next(stream: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("a delivery in time")
        .expect("stream still open")
}

/// Whether the stream yields nothing for a while.
async fn quiet(stream: &mut DeliveryStream) -> bool {
    tokio::time::timeout(Duration::from_millis(50), stream.next())
        .await
        .is_err()
}

fn body(d: &Delivery) -> &str {
    std::str::from_utf8(&d.body).expect("utf-8 body")
}

#[tokio::test]
async fn publishes_and_consumes_in_order_per_source() {
    let q = queue(3);
    publish(&q, Priority::Standard, &["a", "b", "c"]).await;
    publish(&q, Priority::Batch, &["x"]).await;
    assert_eq!(q.depth(Source::Jobs(Priority::Standard)).await.unwrap(), 3);
    assert_eq!(q.depth(Source::Jobs(Priority::Batch)).await.unwrap(), 1);
    assert_eq!(
        q.depth(Source::Jobs(Priority::Interactive)).await.unwrap(),
        0
    );

    let stop = CancellationToken::new();
    let mut s = q
        .consume(Source::Jobs(Priority::Standard), 10, stop.clone())
        .await
        .unwrap();
    for expected in ["a", "b", "c"] {
        let d = next(&mut s).await;
        assert_eq!(body(&d), expected);
        assert_eq!(d.headers.get("job-id").map(String::as_str), Some(expected));
        assert!(!d.redelivered);
        assert_eq!(d.delivery_count, 0);
        d.ack().await.unwrap();
    }
    assert!(quiet(&mut s).await);
    assert_eq!(q.depth(Source::Jobs(Priority::Standard)).await.unwrap(), 0);
    assert_eq!(q.depth(Source::Jobs(Priority::Batch)).await.unwrap(), 1);
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries() {
    let q = queue(3);
    publish(&q, Priority::Interactive, &["1", "2", "3", "4"]).await;
    let source = Source::Jobs(Priority::Interactive);
    let mut s = q
        .consume(source, 2, CancellationToken::new())
        .await
        .unwrap();
    let first = next(&mut s).await;
    let second = next(&mut s).await;
    assert!(quiet(&mut s).await, "a third delivery past prefetch 2");
    assert_eq!(q.depth(source).await.unwrap(), 2);
    first.ack().await.unwrap();
    let third = next(&mut s).await;
    assert_eq!(body(&third), "3");
    assert!(quiet(&mut s).await);
    second.ack().await.unwrap();
    third.ack().await.unwrap();
    assert_eq!(body(&next(&mut s).await), "4");
}

#[tokio::test]
async fn a_message_arriving_later_wakes_the_consumer() {
    let q = queue(3);
    let source = Source::Jobs(Priority::Standard);
    let mut s = q
        .consume(source, 1, CancellationToken::new())
        .await
        .unwrap();
    assert!(quiet(&mut s).await);
    publish(&q, Priority::Standard, &["late"]).await;
    assert_eq!(body(&next(&mut s).await), "late");
}

#[tokio::test]
async fn requeue_counts_and_the_delivery_limit_dead_letters() {
    let q = queue(2);
    publish(&q, Priority::Batch, &["poison", "next"]).await;
    let mut s = q
        .consume(Source::Jobs(Priority::Batch), 1, CancellationToken::new())
        .await
        .unwrap();
    // Deliveries 1..=3 of a limit of 2: requeued to the head each time.
    for count in 0..=2 {
        let d = next(&mut s).await;
        assert_eq!(body(&d), "poison");
        assert_eq!(d.delivery_count, count);
        assert_eq!(d.redelivered, count > 0);
        d.requeue().await.unwrap();
    }
    let d = next(&mut s).await;
    assert_eq!(body(&d), "next");
    d.ack().await.unwrap();

    assert_eq!(q.depth(Source::DeadLetters).await.unwrap(), 1);
    let mut dead = q
        .consume(Source::DeadLetters, 1, CancellationToken::new())
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(body(&d), "poison");
    assert_eq!(d.headers.get("job-id").map(String::as_str), Some("poison"));
    assert_eq!(
        d.headers.get("x-first-death-reason").map(String::as_str),
        Some("delivery_limit")
    );
    assert_eq!(
        d.headers.get("x-first-death-queue").map(String::as_str),
        Some("mem.jobs.batch")
    );
    assert_eq!(
        d.headers.get("x-first-death-exchange").map(String::as_str),
        Some("mem.jobs")
    );
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    d.ack().await.unwrap();
    assert_eq!(q.depth(Source::DeadLetters).await.unwrap(), 0);
}

#[tokio::test]
async fn dead_letter_moves_the_message() {
    let q = queue(5);
    publish(&q, Priority::Standard, &["bad"]).await;
    let mut s = q
        .consume(
            Source::Jobs(Priority::Standard),
            1,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    next(&mut s).await.dead_letter().await.unwrap();
    assert_eq!(q.depth(Source::Jobs(Priority::Standard)).await.unwrap(), 0);
    let mut dead = q
        .consume(Source::DeadLetters, 1, CancellationToken::new())
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(body(&d), "bad");
    assert_eq!(
        d.headers.get("x-first-death-reason").map(String::as_str),
        Some("rejected")
    );
    // Rejected from the dead-letter queue: gone.
    d.dead_letter().await.unwrap();
    assert_eq!(q.depth(Source::DeadLetters).await.unwrap(), 0);
}

#[tokio::test]
async fn a_delivery_dropped_unsettled_is_requeued() {
    let q = queue(5);
    publish(&q, Priority::Standard, &["dropped"]).await;
    let source = Source::Jobs(Priority::Standard);
    let mut s = q
        .consume(source, 1, CancellationToken::new())
        .await
        .unwrap();
    drop(next(&mut s).await);
    assert_eq!(q.depth(source).await.unwrap(), 1);
    let d = next(&mut s).await;
    assert_eq!(body(&d), "dropped");
    assert!(d.redelivered);
    assert_eq!(d.delivery_count, 1);
}

#[tokio::test]
async fn consumers_of_one_source_share_its_messages() {
    let q = queue(5);
    let source = Source::Jobs(Priority::Standard);
    let mut a = q
        .consume(source, 1, CancellationToken::new())
        .await
        .unwrap();
    let mut b = q
        .consume(source, 1, CancellationToken::new())
        .await
        .unwrap();
    publish(&q, Priority::Standard, &["1", "2"]).await;
    let da = next(&mut a).await;
    let db = next(&mut b).await;
    let mut bodies = [body(&da).to_owned(), body(&db).to_owned()];
    bodies.sort();
    assert_eq!(bodies, ["1", "2"]);
    assert!(quiet(&mut a).await && quiet(&mut b).await);
}

#[tokio::test]
async fn stop_ends_the_stream_and_held_deliveries_still_settle() {
    let q = queue(5);
    publish(&q, Priority::Standard, &["held", "left"]).await;
    let source = Source::Jobs(Priority::Standard);
    let stop = CancellationToken::new();
    let mut s = q.consume(source, 1, stop.clone()).await.unwrap();
    let held = next(&mut s).await;
    stop.cancel();
    let end = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends on stop");
    assert!(s.next().await.is_none(), "and stays ended");
    held.ack().await.unwrap();
    assert_eq!(q.depth(source).await.unwrap(), 1);

    // A consumer blocked waiting is woken by stop too.
    let stop = CancellationToken::new();
    let mut s = q.consume(source, 1, stop.clone()).await.unwrap();
    let _left = next(&mut s).await;
    let (ended, ()) = tokio::join!(async { s.next().await.is_none() }, async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
    });
    assert!(ended);
}

#[tokio::test]
async fn close_ends_streams_and_refuses_publishes() {
    let q = queue(5);
    let mut s = q
        .consume(Source::Jobs(Priority::Batch), 1, CancellationToken::new())
        .await
        .unwrap();
    assert!(q.is_ready().await);
    q.close().await;
    assert!(!q.is_ready().await);
    let end = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
    assert!(matches!(end, Ok(None)));
    let results = q.publish(vec![msg(Priority::Batch, "late")]).await;
    assert!(matches!(results[0], Err(QueueError::Unavailable(_))));
}

#[tokio::test]
async fn a_delayed_webhook_message_comes_after_one_sent_now() {
    use crate::WebhookQueue;
    let q = queue(5);
    let mut stream = q
        .consume(Source::Webhooks, 0, CancellationToken::new())
        .await
        .unwrap();
    let sent = q
        .publish_webhooks(vec![
            (Bytes::from_static(b"later"), 50),
            (Bytes::from_static(b"now"), 0),
        ])
        .await;
    assert!(sent.iter().all(Result::is_ok));
    let first = next(&mut stream).await;
    assert_eq!(&first.body[..], b"now");
    let second = next(&mut stream).await;
    assert_eq!(&second.body[..], b"later");
}

#[tokio::test]
async fn only_ended_jobs_with_a_webhook_are_announced() {
    use crate::JobEvents;
    use sluice_core::webhook::{JobWebhook, WebhookMessage};
    let q = queue(5);
    let job = |status, webhook| {
        let mut r = sluice_core::JobRecord::queued(
            sluice_core::JobId::new(),
            "t".into(),
            Default::default(),
            "m".into(),
            Priority::Standard,
            Default::default(),
            chrono::Utc::now(),
            None,
        );
        r.status = status;
        r.webhook = webhook;
        r
    };
    use sluice_core::JobStatus::{Running, Succeeded};
    let with = job(Succeeded, Some(JobWebhook::Endpoints));
    let jobs = [
        job(Succeeded, None),
        with.clone(),
        job(Running, Some(JobWebhook::Endpoints)),
    ];
    q.ended(&jobs).await.unwrap();
    let mut stream = q
        .consume(Source::Webhooks, 0, CancellationToken::new())
        .await
        .unwrap();
    let only = next(&mut stream).await;
    match WebhookMessage::decode(&only.body).unwrap() {
        WebhookMessage::Event(e) => assert_eq!(e.job_id, with.id),
        other => panic!("{other:?}"),
    }
    only.ack().await.unwrap();
    assert_eq!(q.depth(Source::Webhooks).await.unwrap(), 0);
}
