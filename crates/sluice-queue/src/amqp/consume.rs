//! Consumers: one channel each, and the deliveries settled on it by tag.
//! A pack is handed out part by part (see [`crate::pack`]); on a job queue,
//! a pack delivered again is split into single messages instead, and a
//! slot of the prefetch holds a few jobs on average, not a whole pack (see
//! [`Credit`]): when the jobs per message change, the consumer subscribes
//! again with a prefetch to match.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer};
use sluice_core::Priority;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::credit::Credit;
use super::{open_channel, publish, unavailable, unix_now, CONFIRM_TIMEOUT, RPC_TIMEOUT};
use crate::pack::{self, PartSettle};
use crate::sizes::JobsPerMessage;
use crate::{Delivery, DeliveryStream, QueueError, Settle, Settlement};

/// A job queue's consumer: the most jobs a message holds, the queue's
/// priority, and where the jobs per message seen are recorded.
pub(super) type JobQueueParts = (usize, Priority, Arc<JobsPerMessage>);

/// Opens a channel and starts consuming `queue` on it, holding at most
/// `prefetch` messages. With `jobs` (a job queue, whose messages hold up
/// to `pack_jobs` jobs), the prefetch follows the jobs per message (see
/// [`Credit`]), the jobs per message are recorded in `sizes`, and packs
/// delivered again are split into single messages (published on this
/// channel, in confirm mode).
pub(super) async fn start(
    connection: &Connection,
    queue: String,
    tag: String,
    prefetch: u16,
    jobs: Option<JobQueueParts>,
    stop: CancellationToken,
) -> Result<DeliveryStream, QueueError> {
    let split = jobs.is_some();
    let credit = jobs
        .as_ref()
        .map(|(pack_jobs, _, _)| Credit::new(prefetch, *pack_jobs));
    let sizes = jobs.map(|(_, priority, sizes)| (priority, sizes));
    let channel = open_channel(connection, split).await?;
    let messages = credit.as_ref().map_or(prefetch, Credit::messages);
    let consumer = subscribe(&channel, &queue, &tag, messages).await?;
    let consuming = Consuming {
        channel,
        consumer,
        queue,
        base_tag: tag.clone(),
        tag,
        subscriptions: 1,
        split,
        credit,
        sizes,
        resubscribe: None,
        ended: false,
        ready: VecDeque::new(),
        stop,
    };
    let stream = futures::stream::unfold(consuming, Consuming::step);
    Ok(Box::pin(stream.fuse()))
}

/// Sets the channel's prefetch for the next consumer (`global: false`) and
/// starts one.
async fn subscribe(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<Consumer, QueueError> {
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(unavailable("basic.qos"))?;
    channel
        .basic_consume(
            queue,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable("basic.consume"))
}

struct Consuming {
    channel: Channel,
    consumer: Consumer,
    queue: String,
    /// The tag of the first subscription; later ones add `-N`.
    base_tag: String,
    /// The tag of the current subscription.
    tag: String,
    subscriptions: u32,
    /// Split packs delivered again (job queues).
    split: bool,
    /// The prefetch as the jobs per message go (job queues).
    credit: Option<Credit>,
    /// Where the jobs per message are recorded (job queues).
    sizes: Option<(Priority, Arc<JobsPerMessage>)>,
    /// A prefetch in messages to subscribe again with.
    resubscribe: Option<u16>,
    /// No subscription is left: end once `ready` is handed out.
    ended: bool,
    /// Parts of the last pack not handed out yet.
    ready: VecDeque<Delivery>,
    stop: CancellationToken,
}

impl Consuming {
    async fn step(mut self) -> Option<(Delivery, Self)> {
        loop {
            // The rest of a pack already taken goes out first, also when
            // stopping: its parts are this consumer's to settle.
            if let Some(part) = self.ready.pop_front() {
                return Some((part, self));
            }
            if self.ended {
                return None;
            }
            if let Some(messages) = self.resubscribe.take() {
                self.subscribe_again(messages).await;
                continue;
            }
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    self.cancel().await;
                    return None;
                }
                next = self.consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    if let Some(whole) = self.take(delivery).await {
                        return Some((whole, self));
                    }
                }
                Some(Err(e)) => {
                    warn!(queue = %self.queue, error = %e, "AMQP consumer ended");
                    return None;
                }
                None => {
                    warn!(queue = %self.queue, "AMQP consumer cancelled by the broker");
                    return None;
                }
            }
        }
    }

    /// A message to hand out whole; or, for a pack, `None` once its parts
    /// are queued in `ready` (or it was split into single messages).
    async fn take(&mut self, delivery: lapin::message::Delivery) -> Option<Delivery> {
        let (mut headers, delivery_count) = read_headers(delivery.properties.headers().as_ref());
        let settle = Box::new(AmqpSettle {
            channel: self.channel.clone(),
            tag: delivery.delivery_tag,
        });
        let body = Bytes::from(delivery.data);
        let redelivered = delivery.redelivered;
        let whole = |body, headers, settle| Delivery {
            body,
            headers,
            redelivered,
            delivery_count,
            settle,
        };
        if headers.remove(pack::PACK_HEADER).is_none() {
            self.count_jobs(1);
            return Some(whole(body, headers, settle));
        }
        let parts = match pack::decode(&body) {
            Ok(parts) => parts,
            Err(e) => {
                // Handed out whole: its consumer finds it undecodable.
                error!(queue = %self.queue, error = %e, "undecodable pack");
                return Some(whole(body, headers, settle));
            }
        };
        self.count_jobs(parts.len());
        if self.split && delivery.redelivered {
            self.split_pack(&delivery.exchange, &delivery.routing_key, settle, parts)
                .await;
            return None;
        }
        if parts.is_empty() {
            let _ = settle.settle(Settlement::Ack).await;
            return None;
        }
        let settles = PartSettle::split(settle, parts.len());
        for (part, settle) in parts.into_iter().zip(settles) {
            let mut part_headers = headers.clone();
            part_headers.extend(part.headers);
            self.ready.push_back(Delivery {
                body: part.body,
                headers: part_headers,
                redelivered: delivery.redelivered,
                delivery_count,
                settle: Box::new(settle),
            });
        }
        None
    }

    /// Counts a message's jobs; a change of prefetch it calls for is made
    /// before the next delivery is taken.
    fn count_jobs(&mut self, jobs: usize) {
        if let Some((priority, sizes)) = &self.sizes {
            sizes.record(*priority, jobs);
        }
        if let Some(messages) = self.credit.as_mut().and_then(|c| c.record(jobs)) {
            self.resubscribe = Some(messages);
        }
    }

    /// Cancels the subscription and starts another with a prefetch of
    /// `messages`. What the broker sent before its cancel-ok is this
    /// consumer's, handed out as usual. If the cancel fails, the current
    /// subscription stays; if the new one fails, the stream ends (its
    /// caller consumes again) once `ready` is handed out.
    async fn subscribe_again(&mut self, messages: u16) {
        let cancel = self
            .channel
            .basic_cancel(&self.tag, BasicCancelOptions::default());
        if !matches!(timeout(RPC_TIMEOUT, cancel).await, Ok(Ok(()))) {
            warn!(queue = %self.queue, "cannot cancel to change the prefetch; keeping it");
            return;
        }
        // Frames are handled in order: what the broker sent before its
        // cancel-ok is buffered by now.
        while let Some(Some(Ok(delivery))) = self.consumer.next().now_or_never() {
            if let Some(whole) = self.take(delivery).await {
                self.ready.push_back(whole);
            }
        }
        // Those deliveries count too: subscribe with the latest prefetch,
        // once.
        let messages = self.credit.as_ref().map_or(messages, Credit::messages);
        self.resubscribe = None;
        self.tag = format!("{}-{}", self.base_tag, self.subscriptions);
        self.subscriptions += 1;
        match subscribe(&self.channel, &self.queue, &self.tag, messages).await {
            Ok(consumer) => {
                debug!(queue = %self.queue, messages, "prefetch changed");
                self.consumer = consumer;
            }
            Err(e) => {
                warn!(queue = %self.queue, error = %e, "cannot subscribe again");
                self.ended = true;
            }
        }
    }

    /// Republishes each part of a pack delivered again as its own message
    /// (to where the pack went), then acks the pack; if any part is not
    /// confirmed, the pack goes back to the queue instead.
    async fn split_pack(
        &self,
        exchange: &lapin::types::ShortString,
        routing_key: &lapin::types::ShortString,
        settle: Box<AmqpSettle>,
        parts: Vec<pack::Part>,
    ) {
        let timestamp = unix_now();
        let mut confirms = Vec::with_capacity(parts.len());
        for part in &parts {
            let publish = self.channel.basic_publish(
                exchange.as_str(),
                routing_key.as_str(),
                BasicPublishOptions::default(),
                &part.body,
                publish::header_properties(&part.headers, timestamp),
            );
            match publish.await {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    warn!(queue = %self.queue, error = %e, "splitting a pack; requeueing it");
                    let _ = settle.settle(Settlement::Requeue).await;
                    return;
                }
            }
        }
        let mut all_confirmed = true;
        for confirm in confirms {
            all_confirmed &= matches!(
                timeout(CONFIRM_TIMEOUT, confirm).await,
                Ok(Ok(Confirmation::Ack(_)))
            );
        }
        let how = if all_confirmed {
            debug!(queue = %self.queue, parts = parts.len(), "pack delivered again; split");
            Settlement::Ack
        } else {
            warn!(queue = %self.queue, "a split part was not confirmed; requeueing the pack");
            Settlement::Requeue
        };
        if let Err(e) = settle.settle(how).await {
            warn!(queue = %self.queue, error = %e, "settling a split pack");
        }
    }

    /// Cancels the consumer at the broker, then gives back what it had
    /// already sent but the stream had not handed out. The channel stays
    /// open for the deliveries handed out.
    async fn cancel(&mut self) {
        let cancel = self
            .channel
            .basic_cancel(&self.tag, BasicCancelOptions::default());
        match timeout(RPC_TIMEOUT, cancel).await {
            Ok(Ok(())) => debug!(queue = %self.queue, "AMQP consumer cancelled"),
            Ok(Err(e)) => warn!(queue = %self.queue, error = %e, "basic.cancel failed"),
            Err(_) => warn!(queue = %self.queue, "basic.cancel timed out"),
        }
        // Frames are handled in order: what the broker sent before its
        // cancel-ok is buffered by now.
        while let Some(Some(Ok(unseen))) = self.consumer.next().now_or_never() {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            let nack = self.channel.basic_nack(unseen.delivery_tag, requeue);
            if !matches!(timeout(RPC_TIMEOUT, nack).await, Ok(Ok(()))) {
                break;
            }
        }
    }
}

/// Settles one delivery by its own tag on its consumer's channel.
struct AmqpSettle {
    channel: Channel,
    tag: u64,
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        let (channel, tag) = (&self.channel, self.tag);
        let sent = match how {
            Settlement::Ack => {
                let ack = channel.basic_ack(tag, BasicAckOptions { multiple: false });
                timeout(RPC_TIMEOUT, ack).await
            }
            Settlement::Requeue => {
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                timeout(RPC_TIMEOUT, channel.basic_nack(tag, requeue)).await
            }
            Settlement::DeadLetter => {
                let reject = BasicRejectOptions { requeue: false };
                timeout(RPC_TIMEOUT, channel.basic_reject(tag, reject)).await
            }
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(QueueError::Ack(format!("{how:?} of delivery {tag}: {e}"))),
            Err(_) => Err(QueueError::Ack(format!(
                "{how:?} of delivery {tag}: not sent within {RPC_TIMEOUT:?}"
            ))),
        }
    }
}

/// Headers of a delivery: the string-valued ones, and the broker's count
/// of earlier deliveries (`x-delivery-count`, absent on a first delivery).
fn read_headers(table: Option<&FieldTable>) -> (BTreeMap<String, String>, u32) {
    let mut headers = BTreeMap::new();
    let mut count = 0;
    for (key, value) in table.map(FieldTable::inner).into_iter().flatten() {
        let key = key.as_str();
        if key == "x-delivery-count" {
            let n: Option<i64> = match *value {
                AMQPValue::ShortShortInt(n) => Some(n.into()),
                AMQPValue::ShortShortUInt(n) => Some(n.into()),
                AMQPValue::ShortInt(n) => Some(n.into()),
                AMQPValue::ShortUInt(n) => Some(n.into()),
                AMQPValue::LongInt(n) => Some(n.into()),
                AMQPValue::LongUInt(n) => Some(n.into()),
                AMQPValue::LongLongInt(n) => Some(n),
                _ => None,
            };
            count = n.map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
            continue;
        }
        let text = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_owned(),
            _ => continue,
        };
        headers.insert(key.to_owned(), text);
    }
    (headers, count)
}
