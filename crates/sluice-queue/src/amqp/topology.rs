//! Declaring and deleting the exchanges and queues of a [`Topology`].

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use sluice_core::Priority;
use tokio::time::timeout;

use super::{
    bounded, link, open_channel, open_connection, string_arg, unavailable, REPLY_SUCCESS,
    RPC_TIMEOUT,
};
use crate::{QueueError, Topology};

/// Declares every exchange and queue of `topology`, idempotently.
pub(super) async fn declare(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let (jobs, dlx) = (topology.jobs_exchange(), topology.dead_letter_exchange());
    let none = FieldTable::default;
    channel
        .exchange_declare(&dlx, ExchangeKind::Fanout, exchange, none())
        .await?;
    channel
        .exchange_declare(&jobs, ExchangeKind::Direct, exchange, none())
        .await?;

    let quorum = || {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), string_arg("quorum"));
        args
    };
    let dead = topology.dead_letter_queue();
    channel.queue_declare(&dead, queue, quorum()).await?;
    channel
        .queue_bind(&dead, &dlx, "", QueueBindOptions::default(), none())
        .await?;

    let mut args = quorum();
    let limit = i64::from(topology.delivery_limit);
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
    args.insert("x-dead-letter-exchange".into(), string_arg(&dlx));
    for priority in Priority::ALL {
        let name = topology.queue(priority);
        channel.queue_declare(&name, queue, args.clone()).await?;
        let key = priority.as_str();
        channel
            .queue_bind(&name, &jobs, key, QueueBindOptions::default(), none())
            .await?;
    }

    let webhooks = topology.webhooks_exchange();
    channel
        .exchange_declare(&webhooks, ExchangeKind::Direct, exchange, none())
        .await?;
    let hooks = topology.webhooks_queue();
    channel.queue_declare(&hooks, queue, quorum()).await?;
    channel
        .queue_bind(
            &hooks,
            &webhooks,
            crate::WEBHOOK_ROUTING_KEY,
            QueueBindOptions::default(),
            none(),
        )
        .await?;
    for delay in &topology.webhook_delays_ms {
        // Classic queues: a fixed TTL per queue expires messages in order,
        // and each dead-letters back to the webhook exchange.
        let mut args = FieldTable::default();
        let ttl = i64::try_from(*delay).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        args.insert("x-dead-letter-exchange".into(), string_arg(&webhooks));
        args.insert(
            "x-dead-letter-routing-key".into(),
            string_arg(crate::WEBHOOK_ROUTING_KEY),
        );
        let name = topology.webhook_delay_queue(*delay);
        channel.queue_declare(&name, queue, args).await?;
    }
    Ok(())
}

/// Deletes every queue and exchange of `topology` (their messages with
/// them). Tests use it to leave nothing behind.
pub async fn teardown(url: &str, topology: &Topology) -> Result<(), QueueError> {
    let connection = first_node(url).await?;
    let result = bounded("teardown", RPC_TIMEOUT * 4, async {
        let channel = open_channel(&connection, false).await?;
        let mut queues: Vec<String> = Priority::ALL.map(|p| topology.queue(p)).into();
        queues.push(topology.dead_letter_queue());
        queues.push(topology.webhooks_queue());
        queues.extend(
            topology
                .webhook_delays_ms
                .iter()
                .map(|d| topology.webhook_delay_queue(*d)),
        );
        for queue in queues {
            channel
                .queue_delete(&queue, QueueDeleteOptions::default())
                .await
                .map_err(unavailable("queue.delete"))?;
        }
        let exchanges = [
            topology.jobs_exchange(),
            topology.dead_letter_exchange(),
            topology.webhooks_exchange(),
        ];
        for exchange in exchanges {
            channel
                .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                .await
                .map_err(unavailable("exchange.delete"))?;
        }
        // Closed before the connection: a channel still closing when the
        // connection goes makes lapin log a connection error.
        channel
            .close(REPLY_SUCCESS, "teardown")
            .await
            .map_err(unavailable("channel.close"))
    })
    .await;
    let _ = timeout(RPC_TIMEOUT, connection.close(REPLY_SUCCESS, "teardown")).await;
    result
}

/// A connection to the first node of `urls` (comma-separated) that answers.
async fn first_node(urls: &str) -> Result<lapin::Connection, QueueError> {
    let mut last = QueueError::Unavailable("no RabbitMQ URL given".into());
    for url in link::nodes(urls) {
        match bounded("connect", RPC_TIMEOUT, open_connection(&url)).await {
            Ok(connection) => return Ok(connection),
            Err(e) => last = e,
        }
    }
    Err(last)
}
