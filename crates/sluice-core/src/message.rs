//! The message a job travels in through the queue: the whole request, so
//! that a worker needs nothing else to run it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::Metadata;
use crate::{Endpoint, JobId, JobRecord, Priority};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub id: JobId,
    pub tenant_id: String,
    pub endpoint: Endpoint,
    pub model: String,
    pub priority: Priority,
    /// The OpenAI-shaped request body, with `model`.
    pub body: serde_json::Value,
    #[serde(default)]
    pub metadata: Metadata,
    pub trace_id: String,
    /// The API key the job was submitted with (for the usage ledger).
    #[serde(default)]
    pub key_id: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    #[serde(default)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// Who hears of the job's end, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::webhook::JobWebhook>,
    /// What to do with the answer in the cache, when the job may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheDirective>,
    /// Sent back to the queue from a provider batch (hedged, refused, or
    /// its line worth another try): it goes out in real time (or flex),
    /// never in a provider batch again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerouted: bool,
    /// Its caller reads the answer as it is written (`stream: true` on an
    /// OpenAI-compatible route): the provider call streams, and its chunks
    /// are relayed (`crate::stream`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Its tenant's weight and its key's cap on jobs in flight, for the
    /// worker's fair share (`crate::fair`).
    #[serde(default, skip_serializing_if = "crate::fair::Share::is_default")]
    pub share: crate::fair::Share,
}

impl JobMessage {
    /// A message at the standard priority with none of the optional parts
    /// (metadata, key, trace, deadline, webhook, cache directive): the
    /// caller sets those it has.
    pub fn new(
        id: JobId,
        tenant_id: impl Into<String>,
        endpoint: Endpoint,
        model: impl Into<String>,
        body: serde_json::Value,
        enqueued_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            tenant_id: tenant_id.into(),
            endpoint,
            model: model.into(),
            priority: Priority::default(),
            body,
            metadata: Metadata::default(),
            trace_id: String::new(),
            key_id: None,
            enqueued_at,
            deadline_at: None,
            webhook: None,
            cache: None,
            rerouted: false,
            stream: false,
            share: crate::fair::Share::default(),
        }
    }

    /// The message of the job `record` describes, carrying `body`; no cache
    /// directive.
    pub fn of(record: &JobRecord, body: serde_json::Value) -> Self {
        Self {
            id: record.id,
            tenant_id: record.tenant_id.clone(),
            endpoint: record.endpoint,
            model: record.model.clone(),
            priority: record.priority,
            body,
            metadata: record.metadata.clone(),
            trace_id: record.trace_id.clone().unwrap_or_default(),
            key_id: record.key_id.clone(),
            enqueued_at: record.created_at,
            deadline_at: record.deadline_at,
            webhook: record.webhook.clone(),
            cache: None,
            rerouted: false,
            stream: false,
            share: crate::fair::Share::default(),
        }
    }

    /// The message's bytes. A message that cannot be serialised is an
    /// error for the caller to refuse or fail the job with; it is never
    /// published empty.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The AMQP headers the message carries: job id, tenant, trace id,
    /// enqueued-at and deadline.
    pub fn headers(&self) -> std::collections::BTreeMap<String, String> {
        let mut h = std::collections::BTreeMap::new();
        h.insert("job-id".to_owned(), self.id.to_string());
        h.insert("tenant-id".to_owned(), self.tenant_id.clone());
        h.insert("trace-id".to_owned(), self.trace_id.clone());
        h.insert("enqueued-at".to_owned(), self.enqueued_at.to_rfc3339());
        if let Some(d) = self.deadline_at {
            h.insert("deadline".to_owned(), d.to_rfc3339());
        }
        h
    }

    /// Whether the job may wait for a cheaper tier: it has a deadline. The
    /// one rule for what batches together and what joins what in flight.
    pub fn may_wait(&self) -> bool {
        self.deadline_at.is_some()
    }

    /// Whether the deadline has passed at `now`.
    pub fn is_past_deadline(&self, now: DateTime<Utc>) -> bool {
        self.deadline_at.is_some_and(|d| now >= d)
    }
}
