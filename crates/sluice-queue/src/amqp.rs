//! [`JobQueue`] over RabbitMQ (AMQP 0-9-1, through lapin).
//!
//! One connection per [`AmqpQueue`], kept behind a lock, to one node of
//! the broker URLs given (a comma-separated list of a cluster's nodes, see
//! [`link`]). Every operation first checks it: when lapin reports it lost
//! (node stopped, network), the queue reconnects, to the next node first,
//! with capped exponential backoff once every node failed, redeclares the
//! topology and recreates its channels. Operations are bounded in time: a
//! publish during an outage fails with [`QueueError::Unavailable`] within
//! a few seconds ([`ACQUIRE_BUDGET`]), never hangs and never reports a
//! message it could not get confirmed.
//!
//! Channels:
//! - [`PUBLISHER_CHANNELS`] publisher channels in confirm mode, used round
//!   robin; a batch is sent on one channel (under its lock, so confirm
//!   sequence numbers match the order of the frames) and its confirms are
//!   then awaited together, outside the lock. A message the broker returns
//!   as unroutable is matched to its message by message id (the job id),
//!   since lapin may hand the return to another confirm of a `multiple` ack;
//! - one admin channel for `depth` and `is_ready`;
//! - one channel per consumer. Each [`Delivery`](crate::Delivery) holds a handle on its
//!   consumer's channel, so that channel stays open while any delivery of it
//!   is unsettled, even after the stream ended; lapin closes it when the
//!   last handle goes (its unsettled deliveries are then redelivered), and
//!   [`JobQueue::close`] closes the connection with everything on it.

mod consume;
mod credit;
mod link;
mod publish;
mod topology;

pub use topology::teardown;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::publisher_confirm::PublisherConfirm;
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use link::{open_channel, open_connection, Link};

use crate::{pack, DeliveryStream, JobQueue, Outgoing, QueueError, Source, Topology};

/// Publisher channels per connection, used round robin.
pub const PUBLISHER_CHANNELS: usize = 4;
/// How long an operation may spend getting a live connection (waiting for
/// the lock, backing off, reconnecting) before it fails as unavailable.
pub const ACQUIRE_BUDGET: Duration = Duration::from_secs(3);
/// [`AmqpQueue::connect`]'s budget for the first connection.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(10);
/// Longest wait for one batch's frames to be handed to the socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the broker's confirms of one batch.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one request to the broker (declare, qos, ack, cancel).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_SUCCESS: u16 = 200;

/// One message to send: where to, and what.
struct Frame {
    exchange: String,
    routing_key: String,
    body: bytes::Bytes,
    properties: lapin::BasicProperties,
    /// Matches a returned (unroutable) message to this frame.
    message_id: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl crate::WebhookQueue for AmqpQueue {
    async fn publish_webhooks(
        &self,
        messages: Vec<(bytes::Bytes, u64)>,
    ) -> Vec<Result<(), QueueError>> {
        let timestamp = unix_now();
        let n = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        let frames = messages
            .into_iter()
            .enumerate()
            .map(|(i, (body, delay_ms))| {
                let (exchange, routing_key) = if delay_ms == 0 {
                    (
                        self.topology.webhooks_exchange(),
                        crate::WEBHOOK_ROUTING_KEY.to_owned(),
                    )
                } else {
                    (String::new(), self.topology.webhook_delay_queue(delay_ms))
                };
                let message_id = format!("webhook-{timestamp}-{n}-{i}");
                Frame {
                    exchange,
                    routing_key,
                    body,
                    properties: lapin::BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_timestamp(timestamp)
                        .with_message_id(message_id.as_str().into()),
                    message_id: Some(message_id),
                }
            })
            .collect();
        self.publish_frames(frames).await
    }
}

/// The RabbitMQ queue. See the module documentation.
pub struct AmqpQueue {
    /// The broker nodes, tried in turn ([`link`]).
    urls: Vec<String>,
    topology: Topology,
    link: Mutex<Link>,
    next_publisher: AtomicUsize,
    next_consumer: AtomicU64,
    closed: AtomicBool,
    sizes: Arc<crate::sizes::JobsPerMessage>,
}

fn unavailable(what: &str) -> impl FnOnce(lapin::Error) -> QueueError + '_ {
    move |e| QueueError::Unavailable(format!("{what}: {e}"))
}

fn timed_out(what: &str, after: Duration) -> QueueError {
    QueueError::Unavailable(format!("{what}: no answer within {after:?}"))
}

/// Runs `f` for at most `after`, a timeout being an [`QueueError::Unavailable`].
async fn bounded<T>(
    what: &str,
    after: Duration,
    f: impl std::future::Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    timeout(after, f)
        .await
        .unwrap_or_else(|_| Err(timed_out(what, after)))
}

fn string_arg(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

impl AmqpQueue {
    /// Connects to the first node of `urls` (one URL, or several nodes
    /// of one cluster separated by commas) that answers, and declares the
    /// topology (idempotently: every role calls this at start). Every node
    /// is tried in turn, for at most [`CONNECT_BUDGET`].
    pub async fn connect(urls: &str, topology: Topology) -> Result<Self, QueueError> {
        Self::connect_within(urls, topology, CONNECT_BUDGET).await
    }

    /// [`AmqpQueue::connect`], trying for at most `budget` (a caller that
    /// retries on its own, and says so in its log, gives a short one).
    pub async fn connect_within(
        urls: &str,
        topology: Topology,
        budget: Duration,
    ) -> Result<Self, QueueError> {
        let urls = link::nodes(urls);
        if urls.is_empty() {
            return Err(QueueError::Unavailable("no RabbitMQ URL given".into()));
        }
        let queue = Self {
            urls,
            topology,
            link: Mutex::new(Link::default()),
            next_publisher: AtomicUsize::new(0),
            next_consumer: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            sizes: Arc::default(),
        };
        queue.conn(budget).await?;
        Ok(queue)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Sends every frame on one publisher channel, returning the pending
    /// confirms in order. Retries once on a fresh channel when the very
    /// first send finds the channel or connection broken.
    async fn send_all(
        &self,
        frames: &[Frame],
    ) -> (Option<Used>, Vec<Result<PublisherConfirm, QueueError>>) {
        let fail_all = |e: QueueError| {
            let text = e.to_string();
            let mut all = vec![Err(e)];
            all.resize_with(frames.len(), || Err(QueueError::Unavailable(text.clone())));
            (None, all)
        };
        let mut retried = false;
        'attempt: loop {
            let conn = match self.conn(ACQUIRE_BUDGET).await {
                Ok(conn) => conn,
                Err(e) => return fail_all(e),
            };
            let index = self.next_publisher.fetch_add(1, Ordering::Relaxed) % conn.publishers.len();
            let (_slot, channel) = match conn.channel(&conn.publishers[index], true).await {
                Ok(open) => open,
                Err(_) if !retried => {
                    retried = true;
                    continue 'attempt;
                }
                Err(e) => return fail_all(e),
            };
            let mut sent = Vec::with_capacity(frames.len());
            for frame in frames {
                let publish = channel.basic_publish(
                    &frame.exchange,
                    &frame.routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    &frame.body,
                    frame.properties.clone(),
                );
                match publish.await {
                    Ok(confirm) => sent.push(Ok(confirm)),
                    Err(_) if sent.is_empty() && !retried => {
                        retried = true;
                        continue 'attempt;
                    }
                    Err(e) => {
                        let text = format!("publish: {e}");
                        sent.resize_with(frames.len(), || {
                            Err(QueueError::Unavailable(text.clone()))
                        });
                        break;
                    }
                }
            }
            let used = Used {
                conn: Arc::clone(&conn),
                index,
                channel,
            };
            return (Some(used), sent);
        }
    }

    /// Publishes `frames` and waits for their confirms together.
    async fn publish_frames(&self, frames: Vec<Frame>) -> Vec<Result<(), QueueError>> {
        if frames.is_empty() {
            return Vec::new();
        }
        let (used, sent) = match timeout(SEND_TIMEOUT, self.send_all(&frames)).await {
            Ok(sent) => sent,
            Err(_) => {
                let text = timed_out("publish", SEND_TIMEOUT).to_string();
                return frames
                    .iter()
                    .map(|_| Err(QueueError::Unavailable(text.clone())))
                    .collect();
            }
        };
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        let confirmations = join_all(
            sent.into_iter()
                .map(|s| publish::await_confirm(s, deadline)),
        )
        .await;
        let ids: Vec<Option<&str>> = frames.iter().map(|f| f.message_id.as_deref()).collect();
        let outcomes = publish::outcomes(&ids, confirmations);
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(QueueError::Nacked)))
        {
            if let Some(used) = used {
                used.conn.retire_publisher(used.index, &used.channel).await;
            }
        }
        outcomes
    }

    fn consumer_tag(&self, source: Source) -> String {
        let n = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        format!("sluice.{}.{n}", self.topology.source_queue(source))
    }
}

/// The publisher channel a send went out on.
struct Used {
    conn: Arc<link::Conn>,
    index: usize,
    channel: lapin::Channel,
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn publish(&self, messages: Vec<Outgoing>) -> Vec<Result<(), QueueError>> {
        let timestamp = unix_now();
        let exchange = self.topology.jobs_exchange();
        let groups = pack::plan(&messages, self.topology.pack_jobs);
        let frames = groups
            .iter()
            .map(|group| publish::frame(&exchange, &messages, group, timestamp))
            .collect();
        let outcomes = self.publish_frames(frames).await;
        publish::spread(messages.len(), &groups, outcomes)
    }

    async fn consume(
        &self,
        source: Source,
        prefetch: u16,
        stop: CancellationToken,
    ) -> Result<DeliveryStream, QueueError> {
        let conn = self.conn(ACQUIRE_BUDGET).await?;
        let queue = self.topology.source_queue(source);
        let tag = self.consumer_tag(source);
        // On a job queue, the prefetch counts jobs, and a redelivered pack
        // is split into single messages.
        let jobs = match source {
            Source::Jobs(p) => Some((self.topology.pack_jobs, p, Arc::clone(&self.sizes))),
            _ => None,
        };
        let start = consume::start(&conn.connection, queue, tag, prefetch, jobs, stop);
        bounded("consume", RPC_TIMEOUT, start).await
    }

    async fn depth(&self, source: Source) -> Result<u64, QueueError> {
        let conn = self.conn(ACQUIRE_BUDGET).await?;
        let queue = self.topology.source_queue(source);
        bounded("depth", RPC_TIMEOUT, async {
            let (_slot, channel) = conn.channel(&conn.admin, false).await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let declared = channel
                .queue_declare(&queue, passive, FieldTable::default())
                .await
                .map_err(unavailable("queue.declare"))?;
            Ok(u64::from(declared.message_count()))
        })
        .await
    }

    fn jobs_per_message(&self, priority: sluice_core::Priority) -> Option<f64> {
        self.sizes.get(priority)
    }

    async fn is_ready(&self) -> bool {
        let Ok(conn) = self.conn(ACQUIRE_BUDGET).await else {
            return false;
        };
        let exchange = self.topology.jobs_exchange();
        let check = bounded("readiness", RPC_TIMEOUT, async {
            let (_slot, channel) = conn.channel(&conn.admin, false).await?;
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    &exchange,
                    ExchangeKind::Direct,
                    passive,
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable("exchange.declare"))
        });
        check.await.is_ok()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let current = self.link.lock().await.current.take();
        if let Some(conn) = current {
            conn.close().await;
        }
    }
}
