//! Consumers: one channel each, and the deliveries settled on it by tag.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{unavailable, RPC_TIMEOUT};
use crate::{Delivery, DeliveryStream, QueueError, Settle, Settlement};

/// Opens a channel with `prefetch` and starts consuming `queue` on it.
pub(super) async fn start(
    connection: &Connection,
    queue: String,
    tag: String,
    prefetch: u16,
    stop: CancellationToken,
) -> Result<DeliveryStream, QueueError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(unavailable("channel"))?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(unavailable("basic.qos"))?;
    let consumer = channel
        .basic_consume(
            &queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable("basic.consume"))?;
    let consuming = Consuming {
        channel,
        consumer,
        queue,
        tag,
        stop,
    };
    let stream = futures::stream::unfold(consuming, Consuming::step);
    Ok(Box::pin(stream.fuse()))
}

struct Consuming {
    channel: Channel,
    consumer: Consumer,
    queue: String,
    tag: String,
    stop: CancellationToken,
}

impl Consuming {
    async fn step(mut self) -> Option<(Delivery, Self)> {
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
                let delivery = self.wrap(delivery);
                Some((delivery, self))
            }
            Some(Err(e)) => {
                warn!(queue = %self.queue, error = %e, "AMQP consumer ended");
                None
            }
            None => {
                warn!(queue = %self.queue, "AMQP consumer cancelled by the broker");
                None
            }
        }
    }

    fn wrap(&self, delivery: lapin::message::Delivery) -> Delivery {
        let (headers, delivery_count) = read_headers(delivery.properties.headers().as_ref());
        Delivery {
            body: Bytes::from(delivery.data),
            headers,
            redelivered: delivery.redelivered,
            delivery_count,
            settle: Box::new(AmqpSettle {
                channel: self.channel.clone(),
                tag: delivery.delivery_tag,
            }),
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
