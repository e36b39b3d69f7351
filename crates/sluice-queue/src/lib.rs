//! The job queue: a trait with a RabbitMQ implementation ([`amqp`]) and an
//! in-memory one ([`memory`]) for unit tests and `sluice dev`.
//!
//! Topology, all named from the prefix `P` (see [`Topology`]):
//! - exchange `P.jobs` (direct, durable); one durable quorum queue per
//!   priority class, `P.jobs.interactive`, `P.jobs.standard`,
//!   `P.jobs.batch`, bound by the class name, with `x-delivery-limit` and
//!   `x-dead-letter-exchange = P.dlx`;
//! - exchange `P.dlx` (fanout, durable) and its quorum queue `P.dead`,
//!   where poison messages and messages past the delivery limit land.
//!
//! Jobs published together travel in packs of up to
//! [`Topology::pack_jobs`] jobs per message ([`pack`]); a consumer still
//! hands out one [`Delivery`] per job.
//!
//! Invariants: a publish is `Ok` only once the broker confirmed it; each
//! delivery is acked by its own tag, never with `multiple`; a pack is
//! settled only once every one of its jobs is.
//!
//! The behaviour both implementations share is one contract
//! (`contract`, built for tests and with the `contract` feature), run
//! against each.

pub mod amqp;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;
pub mod pack;
mod resume;
pub mod sizes;

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use sluice_core::Priority;

pub use amqp::AmqpQueue;
pub use memory::MemoryQueue;
pub use resume::{consume_until_stopped, RESUBSCRIBE};

/// Jobs per message by default when several are published together.
pub const DEFAULT_PACK_JOBS: usize = 16;

/// Names of every exchange and queue, derived from one prefix.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    /// Deliveries of one message before it is dead-lettered.
    pub delivery_limit: u32,
    /// Most jobs in one message when several are published together
    /// (1: one message per job). See [`pack`].
    pub pack_jobs: usize,
    /// The waits of the webhook retry schedule, in ms: one delay queue each
    /// (declared by the roles that set them: the webhooks role).
    pub webhook_delays_ms: Vec<u64>,
}

impl Topology {
    pub fn new(prefix: impl Into<String>, delivery_limit: u32) -> Self {
        Self {
            prefix: prefix.into(),
            delivery_limit,
            pack_jobs: DEFAULT_PACK_JOBS,
            webhook_delays_ms: Vec::new(),
        }
    }
    /// The same, with at most `jobs` jobs per message (1: no packs).
    pub fn with_pack_jobs(mut self, jobs: usize) -> Self {
        self.pack_jobs = jobs.max(1);
        self
    }
    /// The same, with a delay queue for each of `delays_ms`.
    pub fn with_webhook_delays(mut self, delays_ms: Vec<u64>) -> Self {
        self.webhook_delays_ms = delays_ms;
        self
    }
    /// The webhook exchange (direct) and its quorum queue, fed by job ends
    /// and by the delay queues.
    pub fn webhooks_exchange(&self) -> String {
        format!("{}.webhooks", self.prefix)
    }
    pub fn webhooks_queue(&self) -> String {
        format!("{}.webhooks", self.prefix)
    }
    /// The queue where a webhook retry waits `delay_ms` before it
    /// dead-letters back to the webhook exchange.
    pub fn webhook_delay_queue(&self, delay_ms: u64) -> String {
        format!("{}.webhooks.delay.{delay_ms}", self.prefix)
    }
    /// The delay queue to wait at least `wanted_ms` in: the shortest that
    /// is long enough, or the longest (the consumer waits again if early).
    pub fn webhook_delay_for(&self, wanted_ms: u64) -> Option<u64> {
        let mut delays = self.webhook_delays_ms.clone();
        delays.sort_unstable();
        delays
            .iter()
            .copied()
            .find(|d| *d >= wanted_ms)
            .or_else(|| delays.last().copied())
    }
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn queue(&self, priority: Priority) -> String {
        format!("{}.jobs.{}", self.prefix, priority.as_str())
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    /// The queue a consumer of `source` reads.
    pub fn source_queue(&self, source: Source) -> String {
        match source {
            Source::Jobs(priority) => self.queue(priority),
            Source::DeadLetters => self.dead_letter_queue(),
            Source::Webhooks => self.webhooks_queue(),
        }
    }
}

/// Where a consumer reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Jobs(Priority),
    DeadLetters,
    /// Webhook events and retries, for the webhooks role.
    Webhooks,
}

/// The routing key of the webhook queue on the webhook exchange.
pub const WEBHOOK_ROUTING_KEY: &str = "deliver";

/// Publishing to the webhook queue.
#[async_trait]
pub trait WebhookQueue: Send + Sync + 'static {
    /// Publishes each message, after its delay in ms (0: now; otherwise
    /// through the delay queue of exactly that delay, which the topology
    /// must declare), and waits for the broker's confirms.
    async fn publish_webhooks(&self, messages: Vec<(Bytes, u64)>) -> Vec<Result<(), QueueError>>;
}

/// Where a job's end is announced, for its webhooks: ONE call for every
/// place a job ends (worker, dead letters, cancel), made before the job's
/// delivery is acked, so an end is never lost.
#[async_trait]
pub trait JobEvents: Send + Sync + 'static {
    /// Publishes the webhook event of each ended job that has a webhook,
    /// and waits for the broker's confirms; `Ok` with nothing to publish.
    async fn ended(&self, jobs: &[sluice_core::JobRecord]) -> Result<(), QueueError>;
}

#[async_trait]
impl<T: WebhookQueue + ?Sized> JobEvents for T {
    async fn ended(&self, jobs: &[sluice_core::JobRecord]) -> Result<(), QueueError> {
        let messages = jobs
            .iter()
            .filter_map(sluice_core::webhook::JobEvent::of)
            .map(|e| {
                let job = e.job_id;
                let body = sluice_core::webhook::WebhookMessage::Event(e)
                    .encode()
                    .map_err(|e| QueueError::Unencodable(format!("the end of job {job}: {e}")))?;
                Ok((Bytes::from(body), 0))
            })
            .collect::<Result<Vec<(Bytes, u64)>, QueueError>>()?;
        if messages.is_empty() {
            return Ok(());
        }
        self.publish_webhooks(messages)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }
}

/// A message to publish: the encoded job and the headers it carries
/// (job id, tenant, trace id, enqueued-at, deadline).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub priority: Priority,
    pub body: Bytes,
    pub headers: BTreeMap<String, String>,
}

impl Outgoing {
    /// The message of a job the worker sends back to the queue, on its
    /// priority's queue with its headers.
    pub fn job(message: &sluice_core::JobMessage) -> Result<Self, QueueError> {
        let body = message
            .encode()
            .map_err(|e| QueueError::Unencodable(format!("job {}: {e}", message.id)))?;
        Ok(Self {
            priority: message.priority,
            body: body.into(),
            headers: message.headers(),
        })
    }
}

/// Publishes `jobs` (each on its priority's queue) and waits for every
/// confirm: the first failure, if any.
pub async fn publish_jobs(
    queue: &dyn JobQueue,
    jobs: &[sluice_core::JobMessage],
) -> Result<(), QueueError> {
    let outgoing = jobs
        .iter()
        .map(Outgoing::job)
        .collect::<Result<Vec<_>, _>>()?;
    queue.publish(outgoing).await.into_iter().collect()
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("broker returned the message as unroutable")]
    Unroutable,
    #[error("publisher confirm: no answer within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    #[error("acknowledgement failed: {0}")]
    Ack(String),
    /// A message that could not be serialised: nothing was published.
    #[error("cannot encode {0}")]
    Unencodable(String),
}

impl QueueError {
    /// The `outcome` label of `sluice_publish_confirms_total` for a
    /// publish that failed with this error.
    pub fn confirm_outcome(&self) -> &'static str {
        match self {
            Self::Nacked => "nack",
            Self::Unroutable => "unroutable",
            Self::ConfirmTimeout(_) => "timeout",
            // Never published, so never confirmed; counted as unavailable
            // should a caller pass it here.
            Self::Unavailable(_) | Self::Ack(_) | Self::Unencodable(_) => "unavailable",
        }
    }
}

/// What a consumer receives. It must be settled exactly once, by
/// [`Delivery::ack`], [`Delivery::requeue`] or [`Delivery::dead_letter`];
/// one dropped unsettled stays unacked until its channel closes, and is
/// then redelivered.
pub struct Delivery {
    pub body: Bytes,
    pub headers: BTreeMap<String, String>,
    /// The broker delivered this message before (to this or another consumer).
    pub redelivered: bool,
    /// Earlier deliveries of this message, where the broker counts them
    /// (`x-delivery-count`); 0 on a first delivery.
    pub delivery_count: u32,
    pub(crate) settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("headers", &self.headers)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A job held somewhere other than a queue (a provider batch's record),
    /// settled the same way: `settle` hears whether it was done with.
    pub fn detached(body: Bytes, settle: Box<dyn Settle>) -> Self {
        Self {
            body,
            headers: BTreeMap::new(),
            redelivered: false,
            delivery_count: 0,
            settle,
        }
    }

    /// Done with: the broker forgets the message.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.settle(Settlement::Ack).await
    }
    /// Not done: the broker delivers it again (counting toward the limit).
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.settle(Settlement::Requeue).await
    }
    /// Poison: the broker moves it to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), QueueError> {
        self.settle.settle(Settlement::DeadLetter).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    Requeue,
    DeadLetter,
}

/// How an implementation settles one delivery, by its own tag.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError>;
}

pub type DeliveryStream = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Publishes every message, pipelined, and waits for the broker's
    /// confirms. The result at index i is message i's: `Ok` only if the
    /// broker confirmed it.
    async fn publish(&self, messages: Vec<Outgoing>) -> Vec<Result<(), QueueError>>;

    /// Starts a consumer on `source` holding at most `prefetch` unacked
    /// deliveries. On a job queue, whose messages may be packs, a slot of
    /// the prefetch holds up to 4 jobs on average: the broker's prefetch
    /// (in messages) follows the jobs per message seen, so a consumer
    /// holds about `prefetch` single jobs, or `4 × prefetch` jobs in packs
    /// (up to twice that while the prefetch changes). The stream ends when the connection is lost (call again
    /// to resume: the implementation reconnects) or when `stop` is
    /// cancelled: then the consumer is cancelled at the broker, no new
    /// delivery arrives, and deliveries already handed out can still be
    /// settled until [`JobQueue::close`].
    async fn consume(
        &self,
        source: Source,
        prefetch: u16,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<DeliveryStream, QueueError>;

    /// Messages ready in `source` (not counting unacked ones).
    async fn depth(&self, source: Source) -> Result<u64, QueueError>;

    /// Jobs per message in `priority`'s queue, as this process's consumers
    /// saw them lately ([`sizes`]); `None` before any was seen, or where
    /// messages hold one job each.
    fn jobs_per_message(&self, _priority: sluice_core::Priority) -> Option<f64> {
        None
    }

    /// Whether the broker answers now.
    async fn is_ready(&self) -> bool;

    /// Closes the connection, after the caller settled what it holds.
    async fn close(&self);
}
