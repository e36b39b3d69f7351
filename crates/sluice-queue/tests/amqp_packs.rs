//! Packs on a real RabbitMQ: jobs published together share a message (the
//! contract checks that each is still delivered and settled on its own); a
//! pack settled otherwise than by acks comes back whole, and a pack
//! delivered again comes back as single messages. Each test has its own
//! prefix (see `support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_core::Priority;
use sluice_queue::contract::{
    ack_all, await_depth, bodies, body, jobs, names, next, outgoing, publish_ok, quiet, take,
};
use sluice_queue::{AmqpQueue, Delivery, DeliveryStream, JobQueue, Source};
use tokio_util::sync::CancellationToken;

mod support;

use support::*;

async fn with_packs_of(jobs: usize, test: impl AsyncFnOnce(&AmqpQueue)) {
    with_topology(topology(5).with_pack_jobs(jobs), test).await;
}

/// A consumer with room for 4 full packs, to begin with (16 slots of 4 jobs).
async fn consumer(queue: &AmqpQueue, source: Source) -> DeliveryStream {
    queue
        .consume(source, 16, CancellationToken::new())
        .await
        .unwrap()
}

/// Each part keeps its own job's id header.
fn assert_own_job_ids(deliveries: &[Delivery]) {
    for d in deliveries {
        assert_eq!(d.headers.get("job-id"), Some(&format!("job-{}", body(d))));
    }
}

/// Publishes `sent` as one standard pack, takes its parts, and settles
/// part `odd` with `settle_odd` and every other part with an ack.
async fn settle_pack<F, Fut>(
    queue: &AmqpQueue,
    sent: &[String],
    odd: usize,
    settle_odd: F,
) -> DeliveryStream
where
    F: FnOnce(Delivery) -> Fut,
    Fut: std::future::Future<Output = Result<(), sluice_queue::QueueError>>,
{
    publish_ok(queue, jobs(Priority::Standard, sent)).await;
    let mut stream = consumer(queue, Source::Jobs(Priority::Standard)).await;
    let mut settle_odd = Some(settle_odd);
    for (i, d) in take(&mut stream, sent.len()).await.into_iter().enumerate() {
        match settle_odd.take_if(|_| i == odd) {
            Some(settle) => settle(d).await.unwrap(),
            None => d.ack().await.unwrap(),
        }
    }
    stream
}

#[tokio::test]
async fn jobs_published_together_share_messages() {
    with_packs_of(16, async move |queue| {
        let mut messages = jobs(Priority::Standard, &names("s", 40));
        messages.insert(7, outgoing(Priority::Interactive, "fast"));
        publish_ok(queue, messages).await;
        // 40 standard jobs in packs of 16, 16 and 8; the interactive one
        // alone. (The contract checks that each arrives on its own.)
        await_depth(queue, Source::Jobs(Priority::Standard), 3).await;
        await_depth(queue, Source::Jobs(Priority::Interactive), 1).await;
    })
    .await;
}

#[tokio::test]
async fn a_pack_held_in_part_comes_back_as_single_messages() {
    with_packs_of(16, async move |queue| {
        let sent = names("p", 3);
        publish_ok(queue, jobs(Priority::Batch, &sent)).await;
        let mut stream = consumer(queue, Source::Jobs(Priority::Batch)).await;
        let mut got = take(&mut stream, 3).await;
        let held = got.pop().unwrap();
        ack_all(got).await;
        // Two of three parts acked: the pack is still the consumer's.
        assert!(quiet(&mut stream).await);
        await_depth(queue, Source::Jobs(Priority::Batch), 0).await;

        // Its worker dies holding the third part: the pack is delivered
        // again, and split into one message per job.
        drop((held, stream));
        queue.close().await;
        let again = AmqpQueue::connect(&url(), queue.topology().clone())
            .await
            .unwrap();
        let mut stream = consumer(&again, Source::Jobs(Priority::Batch)).await;
        let singles = take(&mut stream, 3).await;
        assert_eq!(bodies(&singles), sent);
        assert_own_job_ids(&singles);
        // Each now has its own delivery count.
        let mut singles = singles.into_iter();
        singles.next().unwrap().requeue().await.unwrap();
        ack_all(singles).await;
        let back = next(&mut stream).await;
        assert_eq!(body(&back), "p0");
        assert_eq!((back.redelivered, back.delivery_count), (true, 1));
        back.ack().await.unwrap();
        assert!(quiet(&mut stream).await);
        await_depth(&again, Source::Jobs(Priority::Batch), 0).await;
        again.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_requeued_part_brings_its_pack_back_split() {
    with_packs_of(16, async move |queue| {
        let sent = names("r", 4);
        let mut stream = settle_pack(queue, &sent, 2, Delivery::requeue).await;
        // The acked parts come back too (their stored end makes a worker
        // skip them); every one as a message of its own.
        let singles = take(&mut stream, 4).await;
        assert_eq!(bodies(&singles), sent);
        ack_all(singles).await;
        assert!(quiet(&mut stream).await);
        await_depth(queue, Source::Jobs(Priority::Standard), 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_dead_lettered_part_takes_its_pack_to_the_dead_letter_queue_intact() {
    with_packs_of(16, async move |queue| {
        let sent = names("d", 3);
        let _stream = settle_pack(queue, &sent, 1, Delivery::dead_letter).await;
        await_depth(queue, Source::DeadLetters, 1).await;
        let mut dead = consumer(queue, Source::DeadLetters).await;
        let parts = take(&mut dead, 3).await;
        assert_eq!(bodies(&parts), sent);
        assert_own_job_ids(&parts);
        for d in &parts {
            assert_eq!(
                d.headers.get("x-first-death-reason").map(String::as_str),
                Some("rejected")
            );
        }
        ack_all(parts).await;
        await_depth(queue, Source::DeadLetters, 0).await;
        await_depth(queue, Source::Jobs(Priority::Standard), 0).await;
    })
    .await;
}

#[tokio::test]
async fn the_queue_reports_the_jobs_per_message_its_consumers_took() {
    with_packs_of(16, async move |queue| {
        let batch = Priority::Batch;
        assert_eq!(queue.jobs_per_message(batch), None, "nothing taken yet");
        // 32 jobs published together: two packs of 16.
        publish_ok(queue, jobs(batch, &names("b", 32))).await;
        let mut stream = consumer(queue, Source::Jobs(batch)).await;
        ack_all(take(&mut stream, 32).await).await;
        assert_eq!(
            queue.jobs_per_message(batch),
            Some(16.0),
            "so 3 ready messages stand for 48 jobs"
        );
        assert_eq!(queue.jobs_per_message(Priority::Standard), None);
    })
    .await;
}
