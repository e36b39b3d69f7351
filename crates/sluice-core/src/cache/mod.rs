//! The response cache, as every role sees it: what a request asks of the
//! cache, the key it is stored under, what a hit shows, and the semantic
//! cache's vector arithmetic. No I/O: the store keeps entries, the API
//! looks them up, the worker writes them.
//!
//! - [`canonical`]: the exact-cache key (a hash of the tenant and the
//!   normalised request) and whether a request is deterministic.
//! - [`lsh`]: locality-sensitive bucket signatures and cosine similarity.
//! - [`config`]: the `[cache]` table.
//! - [`judge`]: the request that asks a judge model whether two questions
//!   are the same, and how its reply reads.
//! - [`verify`]: the semantic verifier (the words that differ must not
//!   change the meaning) and its calibration.

pub mod canonical;
pub mod config;
pub mod judge;
pub mod lsh;
pub mod verify;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{JobId, Usage};

pub use config::{CacheConfig, SemanticConfig};

/// What a request lets the cache do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Neither read nor write.
    Off,
    /// Answer from the cache (and join an identical job in flight), but do
    /// not store this job's answer.
    Read,
    /// Store this job's answer, but always call the provider.
    Write,
    /// Read and write.
    #[default]
    On,
}

impl CacheMode {
    pub fn reads(self) -> bool {
        matches!(self, Self::Read | Self::On)
    }
    pub fn writes(self) -> bool {
        matches!(self, Self::Write | Self::On)
    }
}

/// The `cache` object of a submitted job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheOptions {
    /// `off`, `read`, `write` or `on`. Left out, deterministic requests
    /// are cached (read and write) and others are not; set, it applies
    /// whatever the request's sampling.
    #[serde(default)]
    pub mode: Option<CacheMode>,
    /// How long this job's answer stays in the cache, in seconds.
    #[serde(default)]
    pub ttl_s: Option<u64>,
    /// Also look for (and store) answers to similar prompts.
    #[serde(default)]
    pub semantic: Option<bool>,
    /// The share of semantic hits this job accepts being wrong answers,
    /// in (0, 1]; left out, `cache.semantic.max_error` of the config.
    #[serde(default)]
    pub max_error: Option<f64>,
}

/// What the worker does with a job's answer, carried on its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDirective {
    /// The request's key ([`canonical::request_key`]).
    pub key: String,
    /// Whether the job may be answered from the cache (checked again by a
    /// worker just before a provider batch is sent; a message from before
    /// this field reads `false`, as the safe side).
    #[serde(default)]
    pub read: bool,
    /// Whether to store the answer, and for how long.
    pub write: bool,
    pub ttl_s: u64,
    /// This job leads identical requests that joined it while it was in
    /// flight: they end with it.
    #[serde(default)]
    pub leads: bool,
    /// The semantic-cache scope the API filed the prompt's vector under,
    /// for the worker to attach the answer to.
    #[serde(default)]
    pub semantic_scope: Option<String>,
}

/// How a cached answer was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// The same request was answered before.
    Exact,
    /// A similar prompt was answered before.
    Semantic,
    /// The same request was in flight; this job ended with it.
    Inflight,
}

impl CacheKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Semantic => "semantic",
            Self::Inflight => "inflight",
        }
    }
}

/// What a job answered from the cache shows under `cache`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheInfo {
    pub kind: CacheKind,
    /// Whether the answer is for a similar, not the same, prompt.
    pub semantic: bool,
    /// The cosine similarity of the two prompts (semantic hits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    /// The job whose provider call made the answer.
    #[schema(value_type = String)]
    pub source_job: JobId,
    /// What that call cost, and so what this job did not.
    pub saved_micros: u64,
}

/// A served semantic hit, kept for review (`GET /v1/cache/semantic/samples`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SemanticSample {
    /// The job answered from the cache.
    #[schema(value_type = String)]
    pub job: JobId,
    /// The job whose answer it was served.
    #[schema(value_type = String)]
    pub source_job: JobId,
    /// The cosine similarity of the two questions.
    pub similarity: f64,
    /// The weakest counterpart the verifier found for a word that differs
    /// (1 when no differing word needed a vector: only function words
    /// differ, or the lexicon related every one; absent when the job
    /// accepted any error and nothing was verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_similarity: Option<f64>,
    /// What let it serve: `words` (the word check), `judge` (the judge
    /// model said the questions are the same) or `none` (the job accepted
    /// any error). Absent on samples kept before the judge was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<VerifiedBy>,
    /// The error rate expected of hits served at this job's setting.
    pub expected_error: f64,
    /// The new question and the cached one, as embedded.
    pub question: String,
    pub cached_question: String,
    pub served_at: chrono::DateTime<chrono::Utc>,
}

/// What let a semantic hit serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifiedBy {
    None,
    Words,
    Judge,
}

impl From<verify::Check> for VerifiedBy {
    fn from(check: verify::Check) -> Self {
        match check {
            verify::Check::Unverified => Self::None,
            verify::Check::Words(_) => Self::Words,
            verify::Check::Judge => Self::Judge,
        }
    }
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub job: JobId,
    pub result: serde_json::Value,
    pub usage: Usage,
    pub provider: String,
    /// What the call that made it cost (0 when the price was unknown).
    pub cost_micros: u64,
}

impl CachedAnswer {
    /// What a job answered with this shows.
    pub fn info(&self, kind: CacheKind, similarity: Option<f64>) -> CacheInfo {
        CacheInfo {
            kind,
            semantic: kind == CacheKind::Semantic,
            similarity,
            source_job: self.job,
            saved_micros: self.cost_micros,
        }
    }
}
