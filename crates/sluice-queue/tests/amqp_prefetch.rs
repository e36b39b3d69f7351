//! A job consumer's prefetch on a real RabbitMQ, which counts messages
//! while a message may be a pack of jobs: a slot holds up to 4 jobs on
//! average, not a whole pack. Each test has its own prefix (see `support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use sluice_core::Priority;
use sluice_queue::contract::{
    await_depth, body, jobs, names, next, outgoing, publish_ok, quiet, take,
};
use sluice_queue::{AmqpQueue, DeliveryStream, JobQueue, Source};
use tokio_util::sync::CancellationToken;

mod support;

use support::*;

const STANDARD: Source = Source::Jobs(Priority::Standard);

async fn consumer(queue: &AmqpQueue, prefetch: u16) -> DeliveryStream {
    queue
        .consume(STANDARD, prefetch, CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fresh_consumer_takes_its_share_of_a_big_batch_and_leaves_the_rest() {
    with_topology(topology(5).with_pack_jobs(16), async move |queue| {
        // 640 jobs published together: 40 packs of 16.
        let sent = names("j", 640);
        publish_ok(queue, jobs(Priority::Standard, &sent)).await;
        let mut first = consumer(queue, 32).await;
        // A prefetch of 32 messages would have taken 32 packs, 512 jobs;
        // 32 slots of 4 jobs are 8 packs.
        let held = take(&mut first, 128).await;
        assert!(quiet(&mut first).await, "the first consumer holds 8 packs");
        let mut second = consumer(queue, 32).await;
        let also = take(&mut second, 128).await;
        assert!(quiet(&mut second).await, "a second consumer gets its share");

        // Settling makes room: every job is delivered, once, to one
        // consumer or the other.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for d in held.into_iter().chain(also) {
            assert!(seen.insert(body(&d)));
            d.ack().await.unwrap();
        }
        let mut both: DeliveryStream = Box::pin(futures::stream::select(first, second));
        while seen.len() < sent.len() {
            let d = next(&mut both).await;
            assert!(seen.insert(body(&d)), "{} delivered twice", body(&d));
            d.ack().await.unwrap();
        }
        assert_eq!(seen, sent.into_iter().collect());
        await_depth(queue, STANDARD, 0).await;
    })
    .await;
}

#[tokio::test]
async fn single_messages_raise_the_prefetch_to_one_job_per_slot() {
    with_topology(topology(5).with_pack_jobs(16), async move |queue| {
        // Published one by one: one message per job.
        let sent = names("j", 200);
        for b in &sent {
            publish_ok(queue, vec![outgoing(Priority::Standard, b)]).await;
        }
        let mut stream = consumer(queue, 32).await;
        // A fresh consumer expects full packs: 8 messages at first. It
        // asks for more as single messages come (while a change is made,
        // it may hold the old window and the new one).
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let d = next(&mut stream).await;
            assert!(seen.insert(body(&d)));
            d.ack().await.unwrap();
        }
        // Now it holds its 32 jobs, one message each, without settling any.
        let held = take(&mut stream, 32).await;
        assert!(quiet(&mut stream).await, "the prefetch grew to 32 messages");
        for d in held {
            assert!(seen.insert(body(&d)));
            d.ack().await.unwrap();
        }
        while seen.len() < sent.len() {
            let d = next(&mut stream).await;
            assert!(seen.insert(body(&d)));
            d.ack().await.unwrap();
        }
        await_depth(queue, STANDARD, 0).await;
    })
    .await;
}
