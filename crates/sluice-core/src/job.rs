//! Jobs: what a caller submits, the states a job moves through, and the
//! record a caller reads back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::JobId;

/// The provider endpoint a job is for, named by its OpenAI path.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum Endpoint {
    #[default]
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    #[serde(rename = "/v1/completions")]
    Completions,
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Self::ChatCompletions, Self::Completions, Self::Embeddings];

    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A path that is not one of the endpoints Sluice serves.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown endpoint {0:?}; expected one of /v1/chat/completions, /v1/completions, /v1/embeddings"
)]
pub struct UnknownEndpoint(pub String);

impl FromStr for Endpoint {
    type Err = UnknownEndpoint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.path() == s)
            .ok_or_else(|| UnknownEndpoint(s.to_owned()))
    }
}

/// The priority class of a job; each class has its own queue.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Interactive,
    #[default]
    Standard,
    Batch,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Self::Interactive, Self::Standard, Self::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Standard => "standard",
            Self::Batch => "batch",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown priority {s:?}; expected interactive, standard or batch")
            })
    }
}

/// Where a job is in its life. A job's status only moves forward:
/// queued → running → succeeded | failed | canceled | expired, and a
/// terminal status never changes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Expired,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// Whether a job in `self` may move to `next`. Running → running is
    /// allowed: it is a redelivered job starting another attempt.
    pub fn can_move_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            (Queued, _) => next != Queued,
            (Running, Running | Succeeded | Failed | Canceled) => true,
            _ => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            "expired" => Self::Expired,
            other => return Err(format!("unknown job status {other:?}")),
        })
    }
}

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

/// Why a job failed (or expired, or was never enqueued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// A stable, machine-readable kind, such as `provider_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened, for a human.
    pub message: String,
    /// The provider's own refusal, when it refused the request (a 4xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
}

/// A provider's refusal of a request (a 4xx other than 408, 409 and 429),
/// as the provider said it: what an OpenAI-compatible caller gets back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// The provider's HTTP status.
    pub status: u16,
    /// The provider's error in OpenAI's shape: `message`, `type`, `param`
    /// and `code` (null where the provider gave none).
    #[schema(value_type = Object)]
    pub error: serde_json::Value,
}

impl Rejection {
    /// The refusal a provider answered with `status` and `body`: its
    /// `error` object (OpenAI's, or Anthropic's `{"type": "error", "error":
    /// {"type", "message"}}`), else the body as the message.
    pub fn from_body(status: u16, body: &str) -> Self {
        let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
        let theirs = parsed.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            theirs
                .and_then(|e| e.get(name))
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        let message = match field("message") {
            serde_json::Value::Null => {
                serde_json::Value::String(body.chars().take(2_000).collect())
            }
            message => message,
        };
        let kind = match field("type") {
            serde_json::Value::Null => serde_json::Value::String("invalid_request_error".into()),
            kind => kind,
        };
        Self {
            status,
            error: serde_json::json!({
                "message": message,
                "type": kind,
                "param": field("param"),
                "code": field("code"),
            }),
        }
    }
}

impl JobError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            rejection: None,
        }
    }

    /// The error of a job whose provider refused it.
    pub fn rejected(
        kind: impl Into<String>,
        message: impl Into<String>,
        rejection: Rejection,
    ) -> Self {
        Self {
            rejection: Some(rejection),
            ..Self::new(kind, message)
        }
    }

    /// The error of a job that expired in the queue.
    pub fn deadline_passed() -> Self {
        Self::new(
            "deadline_exceeded",
            "the job was still queued when its deadline passed; it never reached a provider",
        )
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
    use JobStatus::*;

    const ALL: [JobStatus; 6] = [Queued, Running, Succeeded, Failed, Canceled, Expired];

    #[test]
    fn terminal_states_never_move() {
        for from in ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn queued_moves_anywhere_forward_and_running_cannot_expire() {
        for to in ALL {
            assert_eq!(Queued.can_move_to(to), to != Queued);
        }
        assert!(Running.can_move_to(Running));
        assert!(Running.can_move_to(Succeeded));
        assert!(!Running.can_move_to(Queued));
        assert!(!Running.can_move_to(Expired));
    }

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

    #[test]
    fn endpoints_and_statuses_parse_their_names() {
        for e in Endpoint::ALL {
            assert_eq!(e.path().parse::<Endpoint>().unwrap(), e);
        }
        assert!("/v1/images".parse::<Endpoint>().is_err());
        for s in ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
    }
}
