//! The scenarios of the contract, one `pub async fn` each (see the
//! [module documentation](super)).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sluice_core::Priority;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{Delivery, DeliveryStream, JobEvents, JobQueue, QueueError, Source};

const STANDARD: Source = Source::Jobs(Priority::Standard);
const INTERACTIVE: Source = Source::Jobs(Priority::Interactive);
const BATCH: Source = Source::Jobs(Priority::Batch);

/// Publishes are confirmed, depths count each source's ready messages, and
/// each source is consumed in publishing order with every header.
pub async fn publishes_and_consumes_each_source_in_order(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        assert!(queue.is_ready().await);
        let standard = names("s", 30);
        publish_ok(queue, jobs(Priority::Standard, &standard)).await;
        publish_ok(queue, vec![outgoing(Priority::Interactive, "fast")]).await;
        await_depth(queue, STANDARD, 30).await;
        await_depth(queue, INTERACTIVE, 1).await;
        await_depth(queue, BATCH, 0).await;

        let stop = CancellationToken::new();
        let mut stream = queue.consume(STANDARD, 8, stop.clone()).await.unwrap();
        ack_in_order(&mut stream, &standard).await;
        assert!(quiet(&mut stream).await);
        await_depth(queue, STANDARD, 0).await;

        let mut fast = queue.consume(INTERACTIVE, 1, stop.clone()).await.unwrap();
        let d = next(&mut fast).await;
        assert_eq!(body(&d), "fast");
        d.ack().await.unwrap();
        await_depth(queue, INTERACTIVE, 0).await;
        stop.cancel();
        assert!(ends(&mut stream).await && ends(&mut fast).await);
    })
    .await;
}

/// A consumer holds at most `prefetch` unsettled deliveries; the rest stay
/// ready (and counted) until one is settled.
pub async fn prefetch_bounds_the_unsettled_deliveries(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        publish_ok(queue, jobs(Priority::Interactive, &names("", 5))).await;
        await_depth(queue, INTERACTIVE, 5).await;
        let mut stream = consumer(queue, INTERACTIVE, 2).await;
        let first = next(&mut stream).await;
        let second = next(&mut stream).await;
        assert!(quiet(&mut stream).await, "a third delivery past prefetch 2");
        await_depth(queue, INTERACTIVE, 3).await;
        first.ack().await.unwrap();
        let third = next(&mut stream).await;
        assert_eq!(body(&third), "2");
        assert!(quiet(&mut stream).await);
        await_depth(queue, INTERACTIVE, 2).await;
        ack_all([second, third]).await;
        assert_eq!(bodies(&take(&mut stream, 2).await), ["3", "4"]);
    })
    .await;
}

/// A consumer waiting on an empty queue gets what is published later.
pub async fn a_message_arriving_later_wakes_the_consumer(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        let mut stream = consumer(queue, STANDARD, 1).await;
        assert!(quiet(&mut stream).await);
        publish_ok(queue, vec![outgoing(Priority::Standard, "late")]).await;
        assert_eq!(body(&next(&mut stream).await), "late");
    })
    .await;
}

/// An ack removes the message; a requeue delivers it again, marked
/// redelivered and counted.
pub async fn ack_removes_and_requeue_redelivers(backend: &impl Backend) {
    with_queue(backend, singles(5), async move |queue| {
        let (mut stream, first) = take_one(queue, Priority::Batch, "again").await;
        assert_eq!((first.redelivered, first.delivery_count), (false, 0));
        first.requeue().await.unwrap();

        let second = next(&mut stream).await;
        assert_eq!(body(&second), "again");
        assert_eq!((second.redelivered, second.delivery_count), (true, 1));
        second.ack().await.unwrap();
        assert!(quiet(&mut stream).await);
        await_depth(queue, BATCH, 0).await;
    })
    .await;
}

/// With a delivery limit of L, a message requeued every time is delivered
/// L + 1 times, then dead-lettered with the reason, where it came from and
/// its own headers, as a first delivery again; the messages behind it are
/// served.
pub async fn the_delivery_limit_dead_letters_a_message_requeued_too_often(backend: &impl Backend) {
    with_queue(backend, singles(2), async move |queue| {
        let sent = [
            outgoing(Priority::Batch, "poison"),
            outgoing(Priority::Batch, "next"),
        ];
        publish_ok(queue, sent.into()).await;
        let mut stream = consumer(queue, BATCH, 1).await;
        // Requeued to the head each time.
        for count in 0..=2 {
            let d = next(&mut stream).await;
            assert_eq!(body(&d), "poison");
            assert_eq!((d.redelivered, d.delivery_count), (count > 0, count));
            d.requeue().await.unwrap();
        }
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "next");
        d.ack().await.unwrap();

        let job = (Priority::Batch, "poison");
        let (_dead, d) = take_dead_letter(queue, job, "delivery_limit").await;
        d.ack().await.unwrap();
        await_depth(queue, Source::DeadLetters, 0).await;
    })
    .await;
}

/// Takes the jobs `expected`, in order, each a first delivery with its own
/// headers (and nothing of a pack), and acks each.
async fn ack_in_order(stream: &mut DeliveryStream, expected: &[String]) {
    for job in expected {
        let d = next(stream).await;
        assert_eq!(&body(&d), job);
        assert_eq!(header(&d, "job-id"), Some(format!("job-{job}").as_str()));
        assert_eq!(header(&d, "tenant"), Some("acme"));
        assert!(!d.headers.contains_key(crate::pack::PACK_HEADER));
        assert_eq!((d.redelivered, d.delivery_count), (false, 0));
        d.ack().await.unwrap();
    }
}

/// Publishes job `body` alone and takes it: its consumer (prefetch 1)
/// and its delivery.
async fn take_one(
    queue: &impl JobQueue,
    priority: Priority,
    body: &str,
) -> (DeliveryStream, Delivery) {
    publish_ok(queue, vec![outgoing(priority, body)]).await;
    let mut stream = consumer(queue, Source::Jobs(priority), 1).await;
    let delivery = next(&mut stream).await;
    (stream, delivery)
}

/// Takes the one message of the dead-letter queue, job `job` published
/// with `priority` and dead-lettered for `reason`: it keeps its own
/// headers, gains those that tell why and where from, and is a first
/// delivery again. Answers its consumer and the delivery.
async fn take_dead_letter(
    queue: &impl ContractQueue,
    (priority, job): (Priority, &str),
    reason: &str,
) -> (DeliveryStream, Delivery) {
    await_depth(queue, Source::DeadLetters, 1).await;
    let mut dead = consumer(queue, Source::DeadLetters, 1).await;
    let d = next(&mut dead).await;
    assert_eq!(body(&d), job);
    assert_eq!(header(&d, "job-id"), Some(format!("job-{job}").as_str()));
    assert_eq!(header(&d, "x-first-death-reason"), Some(reason));
    let topology = queue.topology();
    let from = topology.queue(priority);
    assert_eq!(header(&d, "x-first-death-queue"), Some(from.as_str()));
    let exchange = topology.jobs_exchange();
    assert_eq!(
        header(&d, "x-first-death-exchange"),
        Some(exchange.as_str())
    );
    assert_eq!((d.redelivered, d.delivery_count), (false, 0));
    (dead, d)
}

/// A message dead-lettered lands in the dead-letter queue, marked as
/// rejected; one rejected from the dead-letter queue is gone.
pub async fn dead_letter_moves_the_message_to_the_dead_letter_queue(backend: &impl Backend) {
    with_queue(backend, singles(5), async move |queue| {
        let (_stream, bad) = take_one(queue, Priority::Standard, "bad").await;
        bad.dead_letter().await.unwrap();
        await_depth(queue, STANDARD, 0).await;
        let job = (Priority::Standard, "bad");
        let (mut dead, d) = take_dead_letter(queue, job, "rejected").await;
        d.dead_letter().await.unwrap();
        assert!(
            quiet(&mut dead).await,
            "rejected from the dead letters: gone"
        );
        await_depth(queue, Source::DeadLetters, 0).await;
    })
    .await;
}

/// A delivery dropped unsettled (its consumer gone) is delivered again,
/// marked redelivered and counted; until then it is not ready.
pub async fn a_delivery_dropped_unsettled_comes_back(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        let (stream, d) = take_one(queue, Priority::Standard, "dropped").await;
        drop(stream);
        await_depth(queue, STANDARD, 0).await;
        drop(d);
        await_depth(queue, STANDARD, 1).await;

        let mut stream = consumer(queue, STANDARD, 1).await;
        let d = next(&mut stream).await;
        assert_eq!(body(&d), "dropped");
        assert_eq!((d.redelivered, d.delivery_count), (true, 1));
        d.ack().await.unwrap();
    })
    .await;
}

/// Two consumers of one source each get their own messages, never the
/// same one.
pub async fn consumers_of_one_source_share_its_messages(backend: &impl Backend) {
    with_queue(backend, singles(5), async move |queue| {
        let mut a = consumer(queue, STANDARD, 1).await;
        let mut b = consumer(queue, STANDARD, 1).await;
        publish_ok(queue, jobs(Priority::Standard, &names("", 2))).await;
        let (da, db) = (next(&mut a).await, next(&mut b).await);
        let mut got = [body(&da), body(&db)];
        got.sort();
        assert_eq!(got, ["0", "1"]);
        assert!(quiet(&mut a).await && quiet(&mut b).await);
    })
    .await;
}

/// Stopping a consumer ends its stream for good; what it was given can
/// still be settled, and what it had not handed out goes back to the
/// queue. A consumer waiting for a message is stopped too.
pub async fn stop_ends_the_stream_and_held_deliveries_still_settle(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        publish_ok(queue, jobs(Priority::Standard, &names("", 6))).await;
        let stop = CancellationToken::new();
        let mut stream = queue.consume(STANDARD, 3, stop.clone()).await.unwrap();
        let held = next(&mut stream).await;
        // Time for a broker to fill the prefetch.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        assert!(ends(&mut stream).await, "the stream ends on stop");
        assert!(stream.next().await.is_none(), "and stays ended");
        held.ack().await.unwrap();
        await_depth(queue, STANDARD, 5).await;

        let stop = CancellationToken::new();
        let mut idle = queue.consume(BATCH, 1, stop.clone()).await.unwrap();
        assert!(quiet(&mut idle).await);
        stop.cancel();
        assert!(ends(&mut idle).await, "a waiting consumer ends on stop");
    })
    .await;
}

/// Closing the queue ends its streams; it is no longer ready, and refuses
/// publishes and consumers.
pub async fn close_ends_streams_and_refuses_publishes(backend: &impl Backend) {
    with_queue(backend, singles(5), async move |queue| {
        let mut stream = consumer(queue, BATCH, 1).await;
        assert!(queue.is_ready().await);
        queue.close().await;
        assert!(!queue.is_ready().await);
        assert!(ends(&mut stream).await, "the stream ends on close");
        let results = queue.publish(vec![outgoing(Priority::Batch, "late")]).await;
        assert!(matches!(results[..], [Err(QueueError::Unavailable(_))]));
        assert!(queue
            .consume(BATCH, 1, CancellationToken::new())
            .await
            .is_err());
    })
    .await;
}

/// Two thousand jobs published in one call are each confirmed.
pub async fn two_thousand_published_at_once_are_all_confirmed(backend: &impl Backend) {
    with_queue(backend, singles(3), async move |queue| {
        publish_ok(queue, jobs(Priority::Batch, &names("bulk-", 2_000))).await;
        await_depth(queue, BATCH, 2_000).await;
    })
    .await;
}

/// Jobs published together (in packs, where the queue packs them) are
/// delivered one by one, in order, each with its own headers and no trace
/// of a pack; acked each, none comes back.
pub async fn jobs_published_together_arrive_and_settle_one_by_one(backend: &impl Backend) {
    with_queue(backend, packs(), async move |queue| {
        let standard = names("s", 40);
        let mut messages = jobs(Priority::Standard, &standard);
        messages.insert(7, outgoing(Priority::Interactive, "fast"));
        publish_ok(queue, messages).await;

        let mut stream = consumer(queue, STANDARD, 16).await;
        ack_in_order(&mut stream, &standard).await;
        assert!(quiet(&mut stream).await);
        await_depth(queue, STANDARD, 0).await;

        let mut fast = consumer(queue, INTERACTIVE, 1).await;
        let d = next(&mut fast).await;
        assert_eq!(body(&d), "fast");
        d.ack().await.unwrap();
    })
    .await;
}

/// A webhook message sent with a delay arrives after one sent at once.
pub async fn a_delayed_webhook_message_comes_after_one_sent_now(backend: &impl Backend) {
    let topology = singles(5).with_webhook_delays(vec![50]);
    with_queue(backend, topology, async move |queue| {
        let mut stream = consumer(queue, Source::Webhooks, 0).await;
        let sent = queue
            .publish_webhooks(vec![
                (Bytes::from_static(b"later"), 50),
                (Bytes::from_static(b"now"), 0),
            ])
            .await;
        assert!(sent.iter().all(Result::is_ok), "{sent:?}");
        let got = take(&mut stream, 2).await;
        assert_eq!(bodies(&got), ["now", "later"]);
        ack_all(got).await;
        await_depth(queue, Source::Webhooks, 0).await;
    })
    .await;
}

/// A job's end is announced on the webhook queue only when the job has
/// ended and has a webhook.
pub async fn only_ended_jobs_with_a_webhook_are_announced(backend: &impl Backend) {
    use sluice_core::webhook::{JobWebhook, WebhookMessage};
    use sluice_core::JobStatus::{Running, Succeeded};

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
    let with = job(Succeeded, Some(JobWebhook::Endpoints));
    let jobs = [
        job(Succeeded, None),
        with.clone(),
        job(Running, Some(JobWebhook::Endpoints)),
    ];
    with_queue(backend, singles(5), async move |queue| {
        queue.ended(&jobs).await.unwrap();
        queue.ended(&[]).await.unwrap();
        let mut stream = consumer(queue, Source::Webhooks, 0).await;
        let only = next(&mut stream).await;
        match WebhookMessage::decode(&only.body).unwrap() {
            WebhookMessage::Event(e) => assert_eq!(e.job_id, with.id),
            other => panic!("{other:?}"),
        }
        only.ack().await.unwrap();
        assert!(quiet(&mut stream).await, "one event only");
        await_depth(queue, Source::Webhooks, 0).await;
    })
    .await;
}
