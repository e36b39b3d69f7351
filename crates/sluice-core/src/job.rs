//! Jobs: what a caller submits, the states a job moves through, and the
//! record a caller reads back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::JobId;

mod error;
mod kinds;

pub use error::{JobError, Rejection};
pub use kinds::{Endpoint, JobStatus, Priority, UnknownEndpoint};

/// Tokens a job used, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens the provider served from its prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Prompt tokens the provider wrote to its prompt cache (Anthropic's
    /// `cache_creation_input_tokens`; priced above plain input).
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64, cached_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            cached_tokens,
            cache_write_tokens: 0,
        }
    }
}

/// Free-form labels a caller attaches to a job (feature, route, …).
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// Everything Sluice keeps about a job, and what `GET /v1/jobs/{id}` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRecord {
    #[schema(value_type = String, example = "01JDQ7Z5K3M8X2V4N6P9R0S1T2")]
    pub id: JobId,
    #[serde(skip_serializing)]
    #[serde(default)]
    pub tenant_id: String,
    /// The API key the job was submitted with.
    #[serde(skip_serializing)]
    #[serde(default)]
    pub key_id: Option<String>,
    pub status: JobStatus,
    pub endpoint: Endpoint,
    pub model: String,
    pub priority: Priority,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub deadline_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times a worker started the job (more than one after a redelivery).
    #[serde(default)]
    pub attempts: u32,
    /// The attempts whose provider call left (marked just before it was
    /// sent), in order; more than one means the provider billed a call
    /// whose answer the job did not keep (not shown).
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub sent: Vec<u32>,
    /// The provider's response body, OpenAI-shaped.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<JobError>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// What the provider charged for this job, in micro-dollars (its share
    /// of the call, when a call served several jobs); null when the price
    /// table does not price the provider's model.
    #[serde(default)]
    pub cost_micros: Option<u64>,
    /// The provider that answered.
    #[serde(default)]
    pub provider: Option<String>,
    /// How it was answered (`cache`, `realtime`, `flex`, `provider_batch`);
    /// null until it is.
    #[serde(default)]
    pub tier: Option<crate::Tier>,
    /// Who hears of the job's end, if anyone (not shown).
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub webhook: Option<crate::webhook::JobWebhook>,
    /// Whether the answer came from the cache (no provider call of its own).
    #[serde(default)]
    pub cached: bool,
    /// How the cached answer was found, and what it saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheInfo>,
    /// The job's trace (W3C trace id), carried to its webhook.
    #[serde(skip_serializing, default)]
    pub trace_id: Option<String>,
}

impl JobRecord {
    /// A fresh record for a job just accepted.
    #[allow(clippy::too_many_arguments)]
    pub fn queued(
        id: JobId,
        tenant_id: String,
        endpoint: Endpoint,
        model: String,
        priority: Priority,
        metadata: Metadata,
        created_at: DateTime<Utc>,
        deadline_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            id,
            tenant_id,
            key_id: None,
            status: JobStatus::Queued,
            endpoint,
            model,
            priority,
            metadata,
            created_at,
            deadline_at,
            started_at: None,
            finished_at: None,
            attempts: 0,
            sent: Vec::new(),
            result: None,
            error: None,
            usage: None,
            cost_micros: None,
            provider: None,
            tier: None,
            webhook: None,
            cached: false,
            cache: None,
            trace_id: None,
        }
    }
}

impl JobRecord {
    /// How long a store keeps this record from its creation: `retention`,
    /// plus the time to its deadline, since it may wait that long for a
    /// cheaper tier before it ends.
    pub fn kept_for(&self, retention: std::time::Duration) -> std::time::Duration {
        let waits = self
            .deadline_at
            .and_then(|d| (d - self.created_at).to_std().ok())
            .unwrap_or_default();
        retention.saturating_add(waits)
    }
}

/// How a job ended, as a worker reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Succeeded {
        result: serde_json::Value,
        usage: Usage,
        provider: String,
        /// What the provider charged for this job, when its price is known.
        cost_micros: Option<u64>,
        /// The tier of the call that answered it.
        tier: crate::Tier,
    },
    Failed(JobError),
    Expired,
    /// Answered from the cache: the answer's result, usage and provider,
    /// at no cost to this job.
    Cached {
        answer: crate::cache::CachedAnswer,
        info: crate::cache::CacheInfo,
    },
}

impl Outcome {
    /// The tier that answered, if the job was answered.
    pub fn tier(&self) -> Option<crate::Tier> {
        match self {
            Self::Succeeded { tier, .. } => Some(*tier),
            Self::Cached { .. } => Some(crate::Tier::Cache),
            Self::Failed(_) | Self::Expired => None,
        }
    }

    pub fn status(&self) -> JobStatus {
        match self {
            Self::Succeeded { .. } | Self::Cached { .. } => JobStatus::Succeeded,
            Self::Failed(_) => JobStatus::Failed,
            Self::Expired => JobStatus::Expired,
        }
    }
}

/// What a job's end shows on its record besides its status and end time:
/// the one rule for every store (the in-memory one sets these fields, the
/// Redis one writes them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ending {
    pub result: Option<serde_json::Value>,
    pub usage: Option<Usage>,
    pub provider: Option<String>,
    pub cost_micros: Option<u64>,
    pub tier: Option<crate::Tier>,
    pub error: Option<JobError>,
    pub cache: Option<crate::cache::CacheInfo>,
}

impl Outcome {
    /// What this end shows. A cached answer shows its source's result,
    /// usage and provider, at no cost to this job.
    pub fn ending(&self) -> Ending {
        match self {
            Self::Succeeded {
                result,
                usage,
                provider,
                cost_micros,
                ..
            } => Ending {
                result: Some(result.clone()),
                usage: Some(*usage),
                provider: Some(provider.clone()),
                cost_micros: *cost_micros,
                tier: self.tier(),
                ..Ending::default()
            },
            Self::Failed(error) => Ending {
                error: Some(error.clone()),
                ..Ending::default()
            },
            Self::Expired => Ending {
                error: Some(JobError::deadline_passed()),
                ..Ending::default()
            },
            Self::Cached { answer, info } => Ending {
                result: Some(answer.result.clone()),
                usage: Some(answer.usage),
                provider: Some(answer.provider.clone()),
                cost_micros: Some(0),
                tier: self.tier(),
                cache: Some(info.clone()),
                ..Ending::default()
            },
        }
    }
}

impl JobRecord {
    /// What the record shows of its end (nothing while it runs).
    pub fn ending(&self) -> Ending {
        Ending {
            result: self.result.clone(),
            usage: self.usage,
            provider: self.provider.clone(),
            cost_micros: self.cost_micros,
            tier: self.tier,
            error: self.error.clone(),
            cache: self.cache.clone(),
        }
    }

    /// Ends the job with `outcome` at `at` (the caller checked that its
    /// status may move there).
    pub fn end(&mut self, outcome: &Outcome, at: DateTime<Utc>) {
        let e = outcome.ending();
        self.status = outcome.status();
        self.finished_at = Some(at);
        self.cached = e.cache.is_some();
        (self.result, self.usage, self.provider) = (e.result, e.usage, e.provider);
        (self.cost_micros, self.error, self.cache) = (e.cost_micros, e.error, e.cache);
        self.tier = e.tier;
    }
}

/// What a worker learns when it tries to start a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The job is now running; this is its `attempt`-th start. `sent_before`
    /// are the earlier attempts whose provider call left (see
    /// [`JobRecord::sent`]): none of them ended the job, so each was
    /// orphaned (or is still running elsewhere).
    Started { attempt: u32, sent_before: Vec<u32> },
    /// The job's deadline passed while it was queued: it is now expired.
    Expired,
    /// The job was already in this state (canceled, or finished by an
    /// earlier delivery): nothing to do but ack.
    AlreadyDone(JobStatus),
    /// No record: it expired from the store, or was never written.
    Missing,
}

/// What a caller learns when it cancels a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Canceled,
    /// Too late: the job is running or finished, in this status.
    NotCancelable(JobStatus),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_kept_for_its_retention_after_its_deadline() {
        let now = Utc::now();
        let day = std::time::Duration::from_secs(86_400);
        let mut r = JobRecord::queued(
            crate::JobId::new(),
            "t".into(),
            Endpoint::ChatCompletions,
            "m".into(),
            Priority::Batch,
            Metadata::new(),
            now,
            None,
        );
        assert_eq!(r.kept_for(day), day);
        r.deadline_at = Some(now + chrono::Duration::hours(24));
        assert_eq!(r.kept_for(day), 2 * day);
    }
}
