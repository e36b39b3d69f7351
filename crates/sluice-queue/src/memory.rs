//! An in-process [`JobQueue`] with the broker's semantics, for unit tests
//! and `sluice dev`.
//!
//! - one FIFO per [`Source`]; a publish is always confirmed;
//! - `prefetch` bounds the unsettled deliveries of one consumer (0 means
//!   unbounded, as in AMQP); several consumers of one source share it;
//! - [`Delivery::requeue`] puts the message back at the head of its queue
//!   with `redelivered = true` and `delivery_count + 1`; once that count
//!   exceeds [`Topology::delivery_limit`] the message goes to
//!   [`Source::DeadLetters`] instead (as a quorum queue does);
//! - [`Delivery::dead_letter`] moves it to [`Source::DeadLetters`];
//! - a delivery dropped unsettled is requeued (counting toward the limit),
//!   as the broker does when a channel closes with unacked deliveries;
//! - cancelling `stop` (or [`JobQueue::close`]) ends the stream; deliveries
//!   already handed out can still be settled.
//!
//! Dead-lettered messages get the string headers `x-first-death-reason`
//! (`rejected` or `delivery_limit`), `x-first-death-queue` and
//! `x-first-death-exchange`, as from RabbitMQ; their delivery count starts
//! again from 0 and they are not marked redelivered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    Delivery, DeliveryStream, JobQueue, Outgoing, QueueError, Settle, Settlement, Source, Topology,
};

/// The in-memory queue. Cheap to clone: clones share the same queues.
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

struct Shared {
    topology: Topology,
    state: Mutex<State>,
    /// Woken on every change a waiting consumer may care about.
    changed: Notify,
}

#[derive(Default)]
struct State {
    queues: HashMap<Source, VecDeque<Message>>,
    /// Webhook retries waiting for their time (the delay queues).
    delayed: Vec<(tokio::time::Instant, Message)>,
    closed: bool,
}

impl State {
    /// Moves the delayed messages that are due to the webhook queue; the
    /// earliest time one is due after that.
    fn release_due(&mut self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.delayed = later;
        let queue = self.queues.entry(Source::Webhooks).or_default();
        queue.extend(due.into_iter().map(|(_, m)| m));
        self.delayed.iter().map(|(at, _)| *at).min()
    }
}

#[derive(Clone, Debug)]
struct Message {
    body: Bytes,
    headers: BTreeMap<String, String>,
    redelivered: bool,
    delivery_count: u32,
}

impl Message {
    /// A message published now: never delivered yet.
    fn new(body: Bytes, headers: BTreeMap<String, String>) -> Self {
        Self {
            body,
            headers,
            redelivered: false,
            delivery_count: 0,
        }
    }
}

/// What every operation on a closed queue answers.
fn closed() -> QueueError {
    QueueError::Unavailable("queue closed".into())
}

impl MemoryQueue {
    pub fn new(topology: Topology) -> Self {
        Self {
            shared: Arc::new(Shared {
                topology,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }
}

impl Shared {
    /// Publishes `messages`, each stored by `put` under the lock, then wakes
    /// the consumers. Every publish is confirmed at once, or refused when
    /// the queue is closed.
    fn publish<T>(
        &self,
        messages: Vec<T>,
        mut put: impl FnMut(&mut State, T),
    ) -> Vec<Result<(), QueueError>> {
        let n = messages.len();
        {
            let mut state = self.lock();
            if state.closed {
                return (0..n).map(|_| Err(closed())).collect();
            }
            for message in messages {
                put(&mut state, message);
            }
        }
        self.changed.notify_waiters();
        vec![Ok(()); n]
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queues consistent
        // (every update is a single push or pop), so poison is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns a message taken from `source` (the back half of a settle).
    fn give_back(&self, source: Source, mut message: Message, how: Settlement) {
        let dead_reason = match how {
            Settlement::Ack => None,
            Settlement::DeadLetter => Some("rejected"),
            Settlement::Requeue => {
                message.delivery_count = message.delivery_count.saturating_add(1);
                message.redelivered = true;
                (message.delivery_count > self.topology.delivery_limit).then_some("delivery_limit")
            }
        };
        {
            let mut state = self.lock();
            match (how, dead_reason) {
                (Settlement::Ack, _) => {}
                (_, None) => state.queues.entry(source).or_default().push_front(message),
                // The dead-letter queue has no dead-letter exchange of its
                // own: the broker drops what is rejected from it.
                (_, Some(_)) if source == Source::DeadLetters => {}
                (_, Some(reason)) => {
                    let queue = self.topology.source_queue(source);
                    let headers = &mut message.headers;
                    headers
                        .entry("x-first-death-reason".into())
                        .or_insert_with(|| reason.into());
                    headers.entry("x-first-death-queue".into()).or_insert(queue);
                    headers
                        .entry("x-first-death-exchange".into())
                        .or_insert_with(|| self.topology.jobs_exchange());
                    message.redelivered = false;
                    message.delivery_count = 0;
                    let dead = state.queues.entry(Source::DeadLetters).or_default();
                    dead.push_back(message);
                }
            }
        }
        self.changed.notify_waiters();
    }
}

#[async_trait]
impl crate::WebhookQueue for MemoryQueue {
    async fn publish_webhooks(&self, messages: Vec<(Bytes, u64)>) -> Vec<Result<(), QueueError>> {
        let now = tokio::time::Instant::now();
        self.shared.publish(messages, |state, (body, delay_ms)| {
            let at = now + std::time::Duration::from_millis(delay_ms);
            state
                .delayed
                .push((at, Message::new(body, BTreeMap::new())));
        })
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, messages: Vec<Outgoing>) -> Vec<Result<(), QueueError>> {
        self.shared.publish(messages, |state, m| {
            let queue = state.queues.entry(Source::Jobs(m.priority)).or_default();
            queue.push_back(Message::new(m.body, m.headers));
        })
    }

    async fn consume(
        &self,
        source: Source,
        prefetch: u16,
        stop: CancellationToken,
    ) -> Result<DeliveryStream, QueueError> {
        if self.shared.lock().closed {
            return Err(closed());
        }
        let consumer = Consumer {
            shared: self.shared.clone(),
            source,
            prefetch: usize::from(prefetch),
            unsettled: Arc::new(AtomicUsize::new(0)),
            stop,
        };
        let stream = futures::stream::unfold(consumer, |consumer| async move {
            let delivery = consumer.next().await?;
            Some((delivery, consumer))
        });
        Ok(Box::pin(futures::StreamExt::fuse(stream)))
    }

    async fn depth(&self, source: Source) -> Result<u64, QueueError> {
        let state = self.shared.lock();
        let n = state.queues.get(&source).map_or(0, VecDeque::len);
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn is_ready(&self) -> bool {
        !self.shared.lock().closed
    }

    async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
    }
}

struct Consumer {
    shared: Arc<Shared>,
    source: Source,
    prefetch: usize,
    unsettled: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Consumer {
    /// The next delivery, or `None` once stopped or closed.
    async fn next(&self) -> Option<Delivery> {
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            // Registered before looking, so no change is missed in between.
            changed.as_mut().enable();
            if self.stop.is_cancelled() {
                return None;
            }
            let next_due;
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return None;
                }
                next_due = if self.source == Source::Webhooks {
                    state.release_due()
                } else {
                    None
                };
                let room =
                    self.prefetch == 0 || self.unsettled.load(Ordering::SeqCst) < self.prefetch;
                if room {
                    if let Some(message) = state
                        .queues
                        .get_mut(&self.source)
                        .and_then(VecDeque::pop_front)
                    {
                        self.unsettled.fetch_add(1, Ordering::SeqCst);
                        return Some(self.deliver(message));
                    }
                }
            }
            let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                () = changed => {}
                () = tokio::time::sleep_until(next_due.unwrap_or(far)) => {}
            }
        }
    }

    fn deliver(&self, message: Message) -> Delivery {
        Delivery {
            body: message.body.clone(),
            headers: message.headers.clone(),
            redelivered: message.redelivered,
            delivery_count: message.delivery_count,
            settle: Box::new(MemorySettle {
                shared: self.shared.clone(),
                source: self.source,
                unsettled: self.unsettled.clone(),
                message: Some(message),
            }),
        }
    }
}

struct MemorySettle {
    shared: Arc<Shared>,
    source: Source,
    unsettled: Arc<AtomicUsize>,
    /// `None` once settled.
    message: Option<Message>,
}

impl MemorySettle {
    fn finish(&mut self, how: Settlement) {
        if let Some(message) = self.message.take() {
            self.unsettled.fetch_sub(1, Ordering::SeqCst);
            // Gives back and wakes consumers waiting on prefetch room.
            self.shared.give_back(self.source, message, how);
        }
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(mut self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        self.finish(how);
        Ok(())
    }
}

impl Drop for MemorySettle {
    /// Unsettled: back to the queue, as when a channel closes.
    fn drop(&mut self) {
        self.finish(Settlement::Requeue);
    }
}

/// The queue contract (see [`contract`](crate::contract)).
#[cfg(test)]
mod tests {
    crate::queue_contract_tests!(crate::contract::MemoryBackend);
}
