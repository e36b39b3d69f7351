//! The behaviour every queue must have, written once and run against both
//! backends: [`MemoryQueue`](crate::MemoryQueue) in this crate's unit tests
//! (no services), and [`AmqpQueue`](crate::AmqpQueue) in
//! `tests/amqp_contract.rs`, on the real RabbitMQ.
//!
//! Each scenario takes a [`Backend`] and runs on a fresh queue of its own
//! ([`with_queue`]): on RabbitMQ, under a prefix of its own, deleted
//! afterwards whether the scenario passed or not.
//! [`queue_contract_tests!`](crate::queue_contract_tests) makes one test of
//! each scenario for a backend, so the list of scenarios is written once.
//!
//! What only RabbitMQ does (packs split when delivered again, a prefetch
//! that counts messages, unroutable messages, reconnecting) is tested in
//! the crate's own RabbitMQ tests, not here.
//!
//! Built for this crate's tests, and with the `contract` feature for its
//! integration tests.

// Test support: a step that fails is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod scenarios;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;

pub use helpers::*;
pub use scenarios::*;

use crate::{AmqpQueue, JobQueue, MemoryQueue, Topology, WebhookQueue};

/// A queue the scenarios can run on: jobs and webhooks, named by a
/// topology.
pub trait ContractQueue: JobQueue + WebhookQueue {
    fn topology(&self) -> &Topology;
}

impl ContractQueue for MemoryQueue {
    fn topology(&self) -> &Topology {
        MemoryQueue::topology(self)
    }
}

impl ContractQueue for AmqpQueue {
    fn topology(&self) -> &Topology {
        AmqpQueue::topology(self)
    }
}

/// Where the scenarios run.
#[async_trait]
pub trait Backend: Sync {
    type Queue: ContractQueue;

    /// A fresh, empty queue with the settings of `topology`; the backend
    /// may give it a prefix of its own, which the queue's topology tells.
    async fn open(&self, topology: Topology) -> Self::Queue;

    /// Closes `queue` and deletes whatever `open` made for it.
    async fn discard(&self, queue: &Self::Queue);
}

/// Runs `scenario` on a fresh queue of `backend` made from `topology`,
/// then discards the queue, whether the scenario passed or not.
pub async fn with_queue<B: Backend>(
    backend: &B,
    topology: Topology,
    scenario: impl AsyncFnOnce(&B::Queue),
) {
    let queue = backend.open(topology).await;
    let outcome = AssertUnwindSafe(scenario(&queue)).catch_unwind().await;
    backend.discard(&queue).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// One message per job (no packs), and deliveries past `delivery_limit`
/// dead-lettered.
pub fn singles(delivery_limit: u32) -> Topology {
    Topology::new("contract", delivery_limit).with_pack_jobs(1)
}

/// Jobs published together travel in packs of up to 16.
pub fn packs() -> Topology {
    Topology::new("contract", 5).with_pack_jobs(16)
}

/// The in-process queue.
pub struct MemoryBackend;

#[async_trait]
impl Backend for MemoryBackend {
    type Queue = MemoryQueue;

    async fn open(&self, topology: Topology) -> MemoryQueue {
        MemoryQueue::new(topology)
    }

    async fn discard(&self, queue: &MemoryQueue) {
        queue.close().await;
    }
}

/// One `#[tokio::test]` per scenario of the contract, run on `backend` (an
/// expression of a type that implements [`Backend`]).
#[macro_export]
macro_rules! queue_contract_tests {
    ($backend:expr) => {
        $crate::queue_contract_tests!(
            $backend;
            publishes_and_consumes_each_source_in_order,
            prefetch_bounds_the_unsettled_deliveries,
            a_message_arriving_later_wakes_the_consumer,
            ack_removes_and_requeue_redelivers,
            the_delivery_limit_dead_letters_a_message_requeued_too_often,
            dead_letter_moves_the_message_to_the_dead_letter_queue,
            a_delivery_dropped_unsettled_comes_back,
            consumers_of_one_source_share_its_messages,
            stop_ends_the_stream_and_held_deliveries_still_settle,
            close_ends_streams_and_refuses_publishes,
            two_thousand_published_at_once_are_all_confirmed,
            jobs_published_together_arrive_and_settle_one_by_one,
            a_delayed_webhook_message_comes_after_one_sent_now,
            only_ended_jobs_with_a_webhook_are_announced,
        );
    };
    ($backend:expr; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                $crate::contract::$scenario(&$backend).await;
            }
        )+
    };
}
