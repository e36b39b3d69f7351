//! What the API put on the webhook queue: job ends announced for their
//! webhooks, and manual redeliveries.

use futures::{FutureExt, StreamExt};
use sluice_core::webhook::WebhookMessage;
use sluice_queue::{JobQueue, Source};
use tokio_util::sync::CancellationToken;

use super::app::Stack;

impl Stack {
    /// Takes every message waiting on the webhook queue (acking each), in
    /// order. Only what is there now: the in-memory consumer hands out a
    /// waiting message on its first poll.
    pub async fn take_webhook_messages(&self) -> Vec<WebhookMessage> {
        let stop = CancellationToken::new();
        let mut stream = self
            .memory_queue
            .consume(Source::Webhooks, 0, stop.clone())
            .await
            .unwrap();
        let mut taken = Vec::new();
        while let Some(Some(delivery)) = stream.next().now_or_never() {
            taken.push(WebhookMessage::decode(&delivery.body).unwrap());
            delivery.ack().await.unwrap();
        }
        stop.cancel();
        taken
    }

    /// The ids of the jobs whose end was announced, in order.
    pub async fn announced_jobs(&self) -> Vec<String> {
        self.take_webhook_messages()
            .await
            .into_iter()
            .filter_map(|m| match m {
                WebhookMessage::Event(event) => Some(event.job_id.to_string()),
                WebhookMessage::Retry { .. } => None,
            })
            .collect()
    }
}
