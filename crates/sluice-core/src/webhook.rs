//! Webhooks, free of I/O: what a job asks to be told, the event a job's end
//! produces, and the Standard Webhooks signature
//! (<https://www.standardwebhooks.com/>).
//!
//! - A job names a URL (`{"url", "events"}`), or none: then the tenant's
//!   registered endpoints get its events ([`JobWebhook`]).
//! - Each (job, event) has one `webhook-id` ([`webhook_id`]), the same on
//!   every attempt and every redelivery, so a receiver can drop repeats.
//! - The body is `{"type": "job.succeeded", "timestamp": …, "data": <the job
//!   as GET /v1/jobs/{id} shows it>}`, made once when the job ends.
//! - The signature is `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//!   with the key a `whsec_<base64>` secret holds; during a rotation every
//!   live secret signs, the signatures separated by spaces.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;
use utoipa::ToSchema;

use crate::view::JobView;
use crate::{JobId, JobRecord, JobStatus};

/// The events a webhook can ask for: a job's terminal ones, and a Batch
/// API batch's end (`batch.completed`, …), which go to the tenant's
/// endpoints.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Succeeded,
    Failed,
    Canceled,
    Expired,
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    #[serde(rename = "batch.failed")]
    BatchFailed,
    #[serde(rename = "batch.expired")]
    BatchExpired,
    #[serde(rename = "batch.cancelled")]
    BatchCancelled,
}

impl EventKind {
    /// Every event: what an endpoint gets unless it names some.
    pub const ALL: [EventKind; 8] = [
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::BatchCompleted,
        Self::BatchFailed,
        Self::BatchExpired,
        Self::BatchCancelled,
    ];

    /// A job's terminal events: what a job's own webhook gets unless it
    /// names some.
    pub const JOB: [EventKind; 4] = [Self::Succeeded, Self::Failed, Self::Canceled, Self::Expired];

    /// The event a job in `status` produces; `None` while it is not over.
    pub fn of(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Succeeded => Some(Self::Succeeded),
            JobStatus::Failed => Some(Self::Failed),
            JobStatus::Canceled => Some(Self::Canceled),
            JobStatus::Expired => Some(Self::Expired),
            JobStatus::Queued | JobStatus::Running => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::BatchCompleted => "batch.completed",
            Self::BatchFailed => "batch.failed",
            Self::BatchExpired => "batch.expired",
            Self::BatchCancelled => "batch.cancelled",
        }
    }

    /// The payload's `type`: `job.succeeded`, …, `batch.completed`, …
    pub fn type_name(self) -> String {
        match self {
            Self::Succeeded | Self::Failed | Self::Canceled | Self::Expired => {
                format!("job.{}", self.as_str())
            }
            batch => batch.as_str().to_owned(),
        }
    }
}

fn all_events() -> Vec<EventKind> {
    EventKind::JOB.to_vec()
}

/// A webhook named on a job at submit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST the job's events (http or https).
    #[schema(value_type = String, example = "https://example.com/hooks/sluice")]
    pub url: Url,
    /// The events to send; by default every terminal one.
    #[serde(default = "all_events")]
    pub events: Vec<EventKind>,
}

impl WebhookSpec {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

/// Who hears of a job's end: the URL it named, or the tenant's endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "lowercase")]
pub enum JobWebhook {
    Url(WebhookSpec),
    Endpoints,
}

/// The `webhook-id` of a job's event: the same for every attempt and every
/// redelivery of that event.
pub fn webhook_id(job: JobId, kind: EventKind) -> String {
    format!("msg_{job}_{}", kind.as_str())
}

/// A job's end, as it travels to the webhooks role: who to tell and the
/// exact body to send them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub webhook_id: String,
    pub job_id: JobId,
    pub tenant_id: String,
    pub kind: EventKind,
    pub target: JobWebhook,
    /// When the job ended (the payload's `timestamp`).
    pub occurred_at: DateTime<Utc>,
    /// The JSON body, made once so every attempt sends the same bytes.
    pub body: String,
    /// The job's trace id: each attempt sends a `traceparent` in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl JobEvent {
    /// The event of an ended job that has a webhook (and wants this
    /// event); `None` otherwise.
    pub fn of(record: &JobRecord) -> Option<Self> {
        let kind = EventKind::of(record.status)?;
        let target = record.webhook.clone()?;
        if let JobWebhook::Url(spec) = &target {
            if !spec.wants(kind) {
                return None;
            }
        }
        let occurred_at = record.finished_at.unwrap_or_else(Utc::now);
        let body = serde_json::json!({
            "type": kind.type_name(),
            "timestamp": occurred_at,
            "data": JobView::from(record.clone()),
        });
        Some(Self {
            webhook_id: webhook_id(record.id, kind),
            job_id: record.id,
            tenant_id: record.tenant_id.clone(),
            kind,
            target,
            occurred_at,
            body: body.to_string(),
            trace_id: record.trace_id.clone(),
        })
    }
}

impl JobEvent {
    /// A Batch API batch's end (`kind` one of the `batch.*` events), for
    /// the tenant's endpoints. `batch` is the batch id's ULID (the id
    /// without its `batch_` prefix), under which its deliveries are kept;
    /// `data` is the batch as the Batch API shows it.
    pub fn of_batch(
        batch: JobId,
        tenant_id: &str,
        kind: EventKind,
        occurred_at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        let body = serde_json::json!({
            "type": kind.type_name(),
            "timestamp": occurred_at,
            "data": data,
        });
        Self {
            webhook_id: webhook_id(batch, kind),
            job_id: batch,
            tenant_id: tenant_id.to_owned(),
            kind,
            target: JobWebhook::Endpoints,
            occurred_at,
            body: body.to_string(),
            trace_id: None,
        }
    }
}

/// A message on the webhook queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "lowercase")]
pub enum WebhookMessage {
    /// A job ended: fan it out to its targets and make the first attempts.
    Event(JobEvent),
    /// The next attempt of one delivery.
    Retry {
        delivery_id: String,
        /// The attempt this message is for (1-based); an attempt already
        /// recorded is not made again.
        attempt: u32,
        /// Its index in the retry schedule.
        step: usize,
        /// Not before this (a `Retry-After` may push it past the schedule).
        not_before: DateTime<Utc>,
    },
}

impl WebhookMessage {
    /// The message's bytes; an error, never an empty body, when it cannot
    /// be serialised.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A webhook signing secret, `whsec_<base64 key>`. It holds its key ready
/// to sign: a `Secret` is only ever made from a well-formed text (or
/// generated), so nothing can sign with a malformed or empty key. Its
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret {
    text: String,
    /// HMAC-SHA256 keyed with the secret's bytes, cloned for each signature.
    mac: Hmac<Sha256>,
}

pub const SECRET_PREFIX: &str = "whsec_";

/// Why a text is not a webhook secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedSecret {
    #[error("a webhook secret starts with `whsec_`")]
    Prefix,
    #[error("a webhook secret's key (after `whsec_`) is base64")]
    Base64,
    #[error("a webhook secret's key is empty")]
    Empty,
}

impl Secret {
    /// A new random secret (32 bytes of key).
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        // HMAC pads a key shorter than its block (64 bytes for SHA-256)
        // with zeros (RFC 2104), so keying it with the padded block is
        // keying it with `key`, without the fallible slice constructor.
        let mut block = hmac::digest::Key::<Hmac<Sha256>>::default();
        block[..key.len()].copy_from_slice(&key);
        Self {
            text: format!("{SECRET_PREFIX}{}", B64.encode(key)),
            mac: <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block),
        }
    }

    /// A secret from its text: `whsec_` and a non-empty base64 key.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        let key = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(MalformedSecret::Prefix)?;
        let bytes = B64.decode(key).map_err(|_| MalformedSecret::Base64)?;
        if bytes.is_empty() {
            return Err(MalformedSecret::Empty);
        }
        // HMAC takes a key of any length: this refuses nothing parsed above.
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).map_err(|_| MalformedSecret::Empty)?;
        Ok(Self {
            text: text.to_owned(),
            mac,
        })
    }

    /// The secret's text, to store or to show its owner once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…redacted)")
    }
}

/// The `webhook-signature` header: one signature per live secret.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A secret and, during a rotation, the one it replaced until the overlap ends.
#[derive(Clone, Debug)]
pub struct SecretPair {
    pub current: Secret,
    pub previous: Option<(Secret, DateTime<Utc>)>,
}

impl SecretPair {
    /// The secrets that sign at `now`, newest first.
    pub fn live(&self, now: DateTime<Utc>) -> Vec<Secret> {
        let mut live = vec![self.current.clone()];
        if let Some((old, until)) = &self.previous {
            if now < *until {
                live.push(old.clone());
            }
        }
        live
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
