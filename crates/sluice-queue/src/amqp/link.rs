//! The connection of an [`AmqpQueue`]: which broker node it is on, and
//! getting a live one back after a loss.
//!
//! `SLUICE_AMQP_URL` may list several nodes of one RabbitMQ cluster,
//! separated by commas. The queue connects to the first that answers; when
//! the connection is lost (the node stopped, the network dropped) it tries
//! the *next* node first, since the one just lost is the least likely to
//! answer, and goes round the list. A node that fails is skipped at once;
//! the backoff ([`RECONNECT`]) is waited only after a whole round failed.
//! Outside Kubernetes (no Service to move the address to a live node) this
//! is what keeps submissions flowing while a node is down: the quorum
//! queues live on the others.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tracing::{info, warn};

use super::{
    timed_out, topology, unavailable, AmqpQueue, Topology, PUBLISHER_CHANNELS, REPLY_SUCCESS,
    RPC_TIMEOUT,
};
use crate::QueueError;

/// The waits between rounds of connection attempts (every node tried
/// once): 100 ms after the first failed round, doubling, at most 5 s.
const RECONNECT: sluice_core::backoff::Backoff =
    sluice_core::backoff::Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));

/// The node URLs of a comma-separated list (blanks dropped).
pub fn nodes(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A node's address for logs: host, port and vhost, no credentials.
pub fn node_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host)
}

/// The current connection and the reconnection state.
#[derive(Default)]
pub(super) struct Link {
    pub(super) current: Option<Arc<Conn>>,
    /// The node of `current`, or the one to try next.
    node: usize,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

/// One connection and its long-lived channels (created lazily, and again
/// when the broker closed one).
pub(super) struct Conn {
    pub(super) connection: Connection,
    pub(super) publishers: Vec<Mutex<Option<Channel>>>,
    pub(super) admin: Mutex<Option<Channel>>,
}

/// A new channel on `connection`, in confirm mode with `confirm`.
pub(super) async fn open_channel(
    connection: &Connection,
    confirm: bool,
) -> Result<Channel, QueueError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(unavailable("channel"))?;
    if confirm {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable("confirm.select"))?;
    }
    Ok(channel)
}

pub(super) async fn open_connection(url: &str) -> Result<Connection, QueueError> {
    let properties = ConnectionProperties::default()
        .with_connection_name("sluice".into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url, properties)
        .await
        .map_err(unavailable("connect"))
}

impl Conn {
    async fn open(url: &str, topology: &Topology) -> Result<Self, QueueError> {
        let connection = open_connection(url).await?;
        let admin = open_channel(&connection, false).await?;
        topology::declare(&admin, topology)
            .await
            .map_err(unavailable("declaring the topology"))?;
        let conn = Self {
            connection,
            publishers: (0..PUBLISHER_CHANNELS).map(|_| Mutex::new(None)).collect(),
            admin: Mutex::new(Some(admin)),
        };
        for slot in &conn.publishers {
            drop(conn.channel(slot, true).await?);
        }
        Ok(conn)
    }

    fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// The channel in `slot`, opened anew if there is none or the broker
    /// closed it; the slot stays locked while the guard lives.
    pub(super) async fn channel<'a>(
        &self,
        slot: &'a Mutex<Option<Channel>>,
        confirm: bool,
    ) -> Result<(MutexGuard<'a, Option<Channel>>, Channel), QueueError> {
        let mut guard = slot.lock().await;
        if let Some(channel) = guard.as_ref().filter(|c| c.status().connected()) {
            let channel = channel.clone();
            return Ok((guard, channel));
        }
        let channel = open_channel(&self.connection, confirm).await?;
        *guard = Some(channel.clone());
        Ok((guard, channel))
    }

    /// Drops publisher channel `index` if it still is `channel`, so that
    /// the next publish on it opens a fresh one. Used after the broker
    /// nacked a publish: after a node stopped, a channel that published
    /// while the queues were electing new leaders was seen to nack every
    /// later publish, while a new channel on the same connection worked.
    pub(super) async fn retire_publisher(&self, index: usize, channel: &Channel) {
        let Some(slot) = self.publishers.get(index) else {
            return;
        };
        let retired = {
            let mut guard = slot.lock().await;
            match guard.as_ref() {
                Some(current) if current.id() == channel.id() => guard.take(),
                _ => None,
            }
        };
        if let Some(old) = retired.filter(|c| c.status().connected()) {
            warn!(
                channel = old.id(),
                "a publisher channel was nacked; opening a new one"
            );
            let _ = timeout(RPC_TIMEOUT, old.close(REPLY_SUCCESS, "nacked")).await;
        }
    }

    pub(super) async fn close(&self) {
        for slot in self.publishers.iter().chain([&self.admin]) {
            if let Some(channel) = slot.lock().await.take() {
                if channel.status().connected() {
                    let _ = timeout(RPC_TIMEOUT, channel.close(REPLY_SUCCESS, "closing")).await;
                }
            }
        }
        if self.is_connected() {
            let closing = self.connection.close(REPLY_SUCCESS, "closing");
            if let Ok(Err(e)) = timeout(RPC_TIMEOUT, closing).await {
                warn!(error = %e, "closing the AMQP connection");
            }
        }
    }
}

impl AmqpQueue {
    /// A live connection, reconnecting if the current one is lost; fails
    /// as unavailable after `budget`, or at once while backing off past it.
    pub(super) async fn conn(&self, budget: Duration) -> Result<Arc<Conn>, QueueError> {
        if self.is_closed() {
            return Err(QueueError::Unavailable("queue closed".into()));
        }
        let deadline = Instant::now() + budget;
        timeout_at(deadline, self.conn_until(deadline))
            .await
            .unwrap_or_else(|_| Err(timed_out("connecting", budget)))
    }

    async fn conn_until(&self, deadline: Instant) -> Result<Arc<Conn>, QueueError> {
        let mut link = self.link.lock().await;
        if let Some(conn) = link.current.as_ref().filter(|c| c.is_connected()) {
            return Ok(conn.clone());
        }
        let nodes = self.urls.len().max(1);
        if let Some(lost) = link.current.take() {
            let state = lost.connection.status().state();
            let node = node_name(&self.urls[link.node]);
            // The node just lost is tried last.
            link.node = (link.node + 1) % nodes;
            let next = node_name(&self.urls[link.node]);
            warn!(?state, node, next, "AMQP connection lost; reconnecting");
        }
        loop {
            if self.is_closed() {
                return Err(QueueError::Unavailable("queue closed".into()));
            }
            if let Some(at) = link.retry_at {
                if at > deadline {
                    let last = &link.last_error;
                    return Err(QueueError::Unavailable(format!(
                        "reconnecting after: {last}"
                    )));
                }
                sleep_until(at).await;
            }
            // The pointer moves on before the try, so that a try cut short
            // by its caller's budget (a node that does not answer at all)
            // leaves the next caller on the next node.
            let tried = link.node;
            link.node = (tried + 1) % nodes;
            let url = &self.urls[tried];
            let attempt = timeout(RPC_TIMEOUT, Conn::open(url, &self.topology)).await;
            match attempt.unwrap_or_else(|_| Err(timed_out("connect", RPC_TIMEOUT))) {
                Ok(conn) => {
                    if link.failures > 0 {
                        let (node, failures) = (node_name(url), link.failures);
                        info!(failures, node, "AMQP connection restored");
                    }
                    let conn = Arc::new(conn);
                    *link = Link {
                        current: Some(conn.clone()),
                        node: tried,
                        ..Link::default()
                    };
                    return Ok(conn);
                }
                Err(e) => {
                    link.failures = link.failures.saturating_add(1);
                    let node = node_name(url);
                    link.last_error = format!("{node}: {e}");
                    // Every node failed once more: wait before the next round.
                    let per_round = u32::try_from(nodes).unwrap_or(u32::MAX);
                    let backoff = link
                        .failures
                        .is_multiple_of(per_round)
                        .then(|| RECONNECT.delay(link.failures / per_round));
                    link.retry_at = backoff.map(|wait| Instant::now() + wait);
                    warn!(error = %e, node, failures = link.failures, ?backoff, "AMQP connect failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_and_their_names_without_credentials() {
        let urls = "amqp://u:secret@a:5672/%2f, amqp://b:5673/v ,,";
        let list = nodes(urls);
        assert_eq!(list, ["amqp://u:secret@a:5672/%2f", "amqp://b:5673/v"]);
        assert_eq!(node_name(&list[0]), "a:5672/%2f");
        assert_eq!(node_name(&list[1]), "b:5673/v");
        assert_eq!(nodes("amqp://x"), ["amqp://x"]);
    }
}
