//! Handling one message of the webhook queue: an event's fan-out, or one
//! delivery's next attempt.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use sluice_core::config::WebhooksConfig;
use sluice_core::webhook::{signature_header, JobEvent, JobWebhook, SecretPair, WebhookMessage};
use sluice_queue::{Delivery as QueueDelivery, Topology, WebhookQueue};
use sluice_store::webhooks::{Attempt, Delivery, DeliveryState, NewDelivery, WebhookStore};
use sluice_store::StoreError;

use crate::http::{Answer, Sender};
use crate::metrics::WebhookMetrics;

/// How long to wait before giving a message back after a store or broker
/// error, so an outage is not a hot loop of redeliveries.
const REQUEUE_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Processor {
    pub sender: Sender,
    pub retries: std::sync::Arc<dyn WebhookQueue>,
    pub store: std::sync::Arc<dyn WebhookStore>,
    pub config: WebhooksConfig,
    pub topology: Topology,
    pub metrics: WebhookMetrics,
}

/// Why a message must be given back.
#[derive(Debug)]
enum Again {
    Store(StoreError),
    Queue(String),
}

impl From<StoreError> for Again {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl std::fmt::Display for Again {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Queue(e) => write!(f, "queue: {e}"),
        }
    }
}

/// Why a delivery has nobody to sign for it: it ends disabled, unsent.
#[derive(Debug, thiserror::Error)]
enum NoSigner {
    #[error("the endpoint is disabled")]
    Disabled,
    #[error("the endpoint was deleted")]
    Deleted,
    #[error("the tenant has no webhook signing secret")]
    NoSecret,
}

impl Processor {
    pub async fn handle(&self, delivery: QueueDelivery) {
        let message = match WebhookMessage::decode(&delivery.body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "undecodable webhook message; dropping it");
                let _ = delivery.ack().await;
                return;
            }
        };
        let outcome = match message {
            WebhookMessage::Event(event) => self.fan_out(&event).await,
            WebhookMessage::Retry {
                delivery_id,
                attempt,
                step,
                not_before,
            } => self.retry(&delivery_id, attempt, step, not_before).await,
        };
        let settled = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "webhook message not done; giving it back");
                tokio::time::sleep(REQUEUE_AFTER).await;
                delivery.requeue().await
            }
        };
        if let Err(e) = settled {
            // The channel is gone: the broker redelivers it.
            tracing::warn!(error = %e, "settling a webhook message failed");
        }
    }

    /// Opens a delivery per target (once: a repeated event finds them
    /// open) and makes the first attempt of each not yet attempted.
    async fn fan_out(&self, event: &JobEvent) -> Result<(), Again> {
        let targets: Vec<(Option<String>, String)> = match &event.target {
            JobWebhook::Url(spec) => vec![(None, spec.url.to_string())],
            JobWebhook::Endpoints => self
                .store
                .list_endpoints(&event.tenant_id)
                .await?
                .into_iter()
                .filter(|e| e.disabled_at.is_none() && e.events.contains(&event.kind))
                .map(|e| (Some(e.id), e.url))
                .collect(),
        };
        for (endpoint_id, url) in targets {
            let open = self
                .store
                .open_delivery(&NewDelivery {
                    tenant_id: event.tenant_id.clone(),
                    job_id: event.job_id,
                    webhook_id: event.webhook_id.clone(),
                    event: event.kind,
                    endpoint_id,
                    url,
                    body: event.body.clone(),
                    trace_id: event.trace_id.clone(),
                })
                .await?;
            if open.state == DeliveryState::Pending && open.attempts == 0 {
                self.attempt(&open, 1, 0).await?;
            }
        }
        Ok(())
    }

    async fn retry(
        &self,
        id: &str,
        attempt: u32,
        step: usize,
        not_before: chrono::DateTime<Utc>,
    ) -> Result<(), Again> {
        let early = (not_before - Utc::now()).to_std().unwrap_or_default();
        if early > Duration::from_millis(5) {
            // A Retry-After past the longest delay queue: wait again.
            let again = WebhookMessage::Retry {
                delivery_id: id.to_owned(),
                attempt,
                step,
                not_before,
            };
            return self.publish(again, early).await;
        }
        let Some(delivery) = self.store.delivery(id).await? else {
            return Ok(());
        };
        if delivery.state != DeliveryState::Pending || delivery.attempts >= attempt {
            return Ok(()); // done, or this attempt was made already
        }
        self.attempt(&delivery, attempt, step).await
    }

    async fn publish(&self, message: WebhookMessage, wait: Duration) -> Result<(), Again> {
        let wanted = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let delay = if wanted == 0 {
            0
        } else {
            self.topology.webhook_delay_for(wanted).unwrap_or(0)
        };
        let body = message
            .encode()
            .map_err(|e| Again::Queue(format!("cannot encode the next attempt: {e}")))?;
        let sent = self
            .retries
            .publish_webhooks(vec![(Bytes::from(body), delay)])
            .await;
        match sent.into_iter().next() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Again::Queue(e.to_string())),
            None => Err(Again::Queue("no confirm".into())),
        }
    }

    /// The secrets that sign for `delivery` now, or why there is nobody
    /// to sign for.
    async fn secrets(&self, delivery: &Delivery) -> Result<Result<SecretPair, NoSigner>, Again> {
        Ok(match &delivery.endpoint_id {
            Some(id) => match self.store.endpoint(id).await? {
                Some((e, _)) if e.disabled_at.is_some() => Err(NoSigner::Disabled),
                Some((_, pair)) => Ok(pair),
                None => Err(NoSigner::Deleted),
            },
            None => self
                .store
                .tenant_secrets(&delivery.tenant_id)
                .await?
                .ok_or(NoSigner::NoSecret),
        })
    }

    /// Makes attempt `n` (at `step` of the schedule), schedules the next
    /// one if it failed, and records it.
    async fn attempt(&self, delivery: &Delivery, n: u32, step: usize) -> Result<(), Again> {
        let now = Utc::now();
        let pair = match self.secrets(delivery).await? {
            Ok(pair) => pair,
            Err(reason) => {
                let record = Attempt {
                    delivery_id: delivery.id.clone(),
                    attempt: n,
                    attempted_at: now,
                    status_code: None,
                    latency_ms: 0,
                    error: Some(reason.to_string()),
                    next_attempt_at: None,
                };
                self.metrics.attempts.with_label_values(&["disabled"]).inc();
                self.store
                    .record_attempt(&record, DeliveryState::Disabled)
                    .await?;
                return Ok(());
            }
        };
        let timestamp = now.timestamp();
        let signature = signature_header(
            &pair.live(now),
            &delivery.webhook_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let answer = self
            .sender
            .post(
                &delivery.url,
                &delivery.webhook_id,
                timestamp,
                &signature,
                delivery.body.clone(),
                delivery.trace_id.as_deref(),
            )
            .await;
        let (state, next) = self.after(delivery, &answer, n, step).await?;
        let outcome = match state {
            DeliveryState::Pending => "failed",
            other => other.as_str(),
        };
        self.metrics.attempts.with_label_values(&[outcome]).inc();
        self.metrics
            .attempt_duration
            .with_label_values(&[outcome])
            .observe(answer.latency.as_secs_f64());
        if state == DeliveryState::Exhausted {
            self.metrics.exhausted.inc();
            tracing::warn!(delivery = %delivery.id, webhook_id = %delivery.webhook_id, attempts = n, "webhook delivery exhausted");
        }
        let record = Attempt {
            delivery_id: delivery.id.clone(),
            attempt: n,
            attempted_at: now,
            status_code: answer.status,
            latency_ms: u64::try_from(answer.latency.as_millis()).unwrap_or(u64::MAX),
            error: answer.error.clone(),
            next_attempt_at: next,
        };
        self.store.record_attempt(&record, state).await?;
        Ok(())
    }

    /// The delivery's state after `answer`; a retry is published (and
    /// confirmed) before this returns `Pending`.
    async fn after(
        &self,
        delivery: &Delivery,
        answer: &Answer,
        n: u32,
        step: usize,
    ) -> Result<(DeliveryState, Option<chrono::DateTime<Utc>>), Again> {
        if answer.succeeded() {
            return Ok((DeliveryState::Succeeded, None));
        }
        if answer.status == Some(410) {
            if let Some(id) = &delivery.endpoint_id {
                self.store
                    .disable_endpoint(id, "the endpoint answered 410 Gone")
                    .await?;
            }
            return Ok((DeliveryState::Gone, None));
        }
        let Some(wait_ms) = self.config.delay_ms(step + 1) else {
            return Ok((DeliveryState::Exhausted, None));
        };
        let wait = Duration::from_millis(wait_ms).max(answer.retry_after.unwrap_or_default());
        let not_before = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let next = WebhookMessage::Retry {
            delivery_id: delivery.id.clone(),
            attempt: n + 1,
            step: step + 1,
            not_before,
        };
        self.publish(next, wait).await?;
        Ok((DeliveryState::Pending, Some(not_before)))
    }
}
