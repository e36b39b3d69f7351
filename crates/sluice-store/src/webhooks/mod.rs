//! Webhook endpoints, signing secrets, deliveries and their attempts
//! (PostgreSQL, and an in-memory twin).
//!
//! A delivery is one (event, target) pair: a job's event to the URL the job
//! named, or to one of its tenant's endpoints. Opening it twice (a
//! redelivered event) returns the first one. Every attempt is a row of its
//! own; recording attempt `n` moves the delivery's `attempts` to `n`.

mod memory;
mod postgres;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::webhook::{EventKind, Secret, SecretPair};
use sluice_core::JobId;
use utoipa::ToSchema;

pub use memory::MemoryWebhookStore;
pub use postgres::PgWebhookStore;

use crate::StoreError;

/// A tenant's registered endpoint (its secret is never part of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<EventKind>,
    pub created_at: DateTime<Utc>,
    /// Set when the endpoint answered 410 Gone: it gets nothing more.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Attempts are still to come.
    Pending,
    /// A 2xx answer.
    Succeeded,
    /// Every attempt of the schedule failed.
    Exhausted,
    /// The receiver answered 410 Gone.
    Gone,
    /// Its endpoint was disabled or deleted before the attempt.
    Disabled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Exhausted => "exhausted",
            Self::Gone => "gone",
            Self::Disabled => "disabled",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "exhausted" => Self::Exhausted,
            "gone" => Self::Gone,
            "disabled" => Self::Disabled,
            other => return Err(StoreError::Corrupt(format!("delivery state {other:?}"))),
        })
    }
}

/// A delivery to open: one event to one target.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub tenant_id: String,
    pub job_id: JobId,
    pub webhook_id: String,
    pub event: EventKind,
    /// The endpoint's id; `None` for the URL the job named.
    pub endpoint_id: Option<String>,
    pub url: String,
    pub body: String,
    /// The job's trace id, for the attempts' `traceparent`.
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    #[schema(value_type = String)]
    pub job_id: JobId,
    pub webhook_id: String,
    pub event: EventKind,
    pub endpoint_id: Option<String>,
    pub url: String,
    #[serde(skip)]
    pub body: String,
    #[serde(skip)]
    pub trace_id: Option<String>,
    pub state: DeliveryState,
    /// Attempts made so far.
    #[serde(rename = "attempt_count")]
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Attempt {
    #[serde(skip)]
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong: a connect error, a timeout, a refused address, a
    /// non-2xx answer (with the start of its body).
    pub error: Option<String>,
    /// When the next attempt is due; none after the last.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A new id for an endpoint or a delivery: a ULID, sorting by time.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Makes the tenant's signing secret for the URLs its jobs name, or
    /// replaces it (the old one signing on for `overlap`); the new secret.
    async fn rotate_tenant_secret(
        &self,
        tenant_id: &str,
        overlap: Duration,
    ) -> Result<Secret, StoreError>;

    /// The tenant's signing secrets, if it has made one.
    async fn tenant_secrets(&self, tenant_id: &str) -> Result<Option<SecretPair>, StoreError>;

    /// Registers an endpoint; its secret is returned here only.
    async fn create_endpoint(
        &self,
        tenant_id: &str,
        url: &str,
        events: &[EventKind],
    ) -> Result<(Endpoint, Secret), StoreError>;

    /// The tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>, StoreError>;

    /// Whether the tenant has an enabled endpoint.
    async fn has_endpoints(&self, tenant_id: &str) -> Result<bool, StoreError>;

    /// Deletes the tenant's endpoint; false if it has none by that id.
    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;

    /// Gives the tenant's endpoint a new secret, the old one signing on for
    /// `overlap`; `None` if it has no such endpoint.
    async fn rotate_endpoint_secret(
        &self,
        tenant_id: &str,
        id: &str,
        overlap: Duration,
    ) -> Result<Option<Secret>, StoreError>;

    /// An endpoint (of any tenant) and its secrets.
    async fn endpoint(&self, id: &str) -> Result<Option<(Endpoint, SecretPair)>, StoreError>;

    /// Stops an endpoint from getting anything more.
    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError>;

    /// Opens a delivery, or returns the one already open for the same
    /// webhook-id and target.
    async fn open_delivery(&self, new: &NewDelivery) -> Result<Delivery, StoreError>;

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;

    /// Records an attempt, and the delivery's state after it.
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        state: DeliveryState,
    ) -> Result<(), StoreError>;

    /// The tenant's deliveries of a job, oldest first, each with its attempts.
    async fn deliveries_of(
        &self,
        tenant_id: &str,
        job_id: JobId,
    ) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError>;

    /// Sets the tenant's delivery pending again (a manual redelivery); the
    /// delivery, or `None` if the tenant has none by that id.
    async fn reopen(&self, tenant_id: &str, id: &str) -> Result<Option<Delivery>, StoreError>;
}
