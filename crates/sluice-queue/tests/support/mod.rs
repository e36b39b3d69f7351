//! What the RabbitMQ test files share: a queue under a random prefix whose
//! topology is deleted afterwards, as a contract [`AmqpBackend`] too. The
//! helpers for publishing and waiting are the contract's.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::hash::{BuildHasher, Hasher};

use async_trait::async_trait;
use sluice_queue::amqp::teardown;
use sluice_queue::contract::{self, Backend};
use sluice_queue::{AmqpQueue, JobQueue, Topology};

pub fn url() -> String {
    std::env::var("SLUICE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `topology` under a random prefix of its own.
fn unique(topology: Topology) -> Topology {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Topology {
        prefix: format!("test-{random:016x}"),
        ..topology
    }
}

/// A topology under a random prefix, one message per job (no packs).
pub fn topology(delivery_limit: u32) -> Topology {
    unique(contract::singles(delivery_limit))
}

/// The real RabbitMQ, a prefix per queue, its topology deleted after.
pub struct AmqpBackend;

#[async_trait]
impl Backend for AmqpBackend {
    type Queue = AmqpQueue;

    async fn open(&self, topology: Topology) -> AmqpQueue {
        AmqpQueue::connect(&url(), unique(topology))
            .await
            .expect("connect")
    }

    async fn discard(&self, queue: &AmqpQueue) {
        queue.close().await;
        teardown(&url(), queue.topology()).await.expect("teardown");
    }
}

/// Runs `test` with a queue connected on `topology` (under a prefix of its
/// own), then tears it down.
pub async fn with_topology(topology: Topology, test: impl AsyncFnOnce(&AmqpQueue)) {
    contract::with_queue(&AmqpBackend, topology, test).await;
}
