//! Provider Batch API clients: jobs that can wait hours go out as lines of
//! one remote batch, answered within a day at the provider's batch price.
//!
//! - [`BatchApi`]: the trait every client implements: build a line, submit
//!   a batch, read its status, cancel it, read its results.
//! - [`openai`]: OpenAI's Files and Batches APIs (`kind = "openai"`).
//! - [`anthropic`]: Anthropic's Message Batches API (`kind = "anthropic"`).
//! - [`batch_api`]: the client of one configured provider.
//!
//! Invariants:
//! - A line carries its job's id as `custom_id`, and its answer is matched
//!   by that id, never by position. A result line whose id the batch did
//!   not send (or sent once and sees twice) is reported in
//!   [`BatchResults::unmatched`], never guessed onto a job.
//! - A failed line fails its own job only; its [`ProviderError`] says
//!   whether another try (in real time) can help: a 5xx, a 429 or a line
//!   the provider never reached can, a 4xx cannot. A line the provider
//!   never ran (the batch was cancelled or expired first) is
//!   [`LineResult::NotRun`] and was not billed.
//! - Nothing here holds a result file as one string: it is read as a stream
//!   of JSON lines ([`lines`]).
//!
//! The caller (the worker) owns everything else: which jobs go in, the
//! durable record of the remote batch, polling, hedging and re-routing.

pub mod anthropic;
mod client;
pub mod lines;
pub mod openai;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::config::{Config, ProviderConfig, ProviderKind};
use sluice_core::metrics::Metrics;
use sluice_core::Endpoint;

use crate::adapter::AdapterBase;
use crate::{Answer, ProviderError, SetupError};

/// One line going out: `custom_id` is the job's id; `body` is the request
/// in the provider's own shape, as [`BatchApi::line`] built it (OpenAI: the
/// OpenAI body with the upstream model; Anthropic: the Messages `params`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchLine {
    pub custom_id: String,
    pub body: Value,
}

/// Where a remote batch stands, in OpenAI's words (Anthropic's three
/// states map onto them, see [`anthropic`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteState {
    /// The provider is checking the input (OpenAI only).
    Validating,
    InProgress,
    /// The lines are done; the provider is writing the results (OpenAI only).
    Finalizing,
    /// Every line ended; its results can be read.
    Completed,
    /// The batch as a whole was refused (see [`RemoteBatch::errors`]); no
    /// line ran.
    Failed,
    /// The completion window ran out: finished lines have results, the
    /// others come back [`LineResult::NotRun`].
    Expired,
    Cancelling,
    /// Cancelled: finished lines have results, the others come back
    /// [`LineResult::NotRun`].
    Cancelled,
}

impl RemoteState {
    pub const ALL: [RemoteState; 8] = [
        Self::Validating,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Failed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the batch will not move again: its results (if any) are
    /// final, and a job without one was not answered by it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Expired | Self::Cancelled
        )
    }
}

impl std::fmt::Display for RemoteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RemoteState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown batch state {s:?}"))
    }
}

/// A remote batch's lines: all of them, those answered, those failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// A remote batch as its provider last described it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteBatch {
    /// The provider's id for the batch.
    pub id: String,
    pub state: RemoteState,
    pub counts: Counts,
    /// The input file the batch read (OpenAI); Anthropic: none.
    pub input_file_id: Option<String>,
    /// Where the answered lines are: OpenAI's output file id; Anthropic's
    /// `results_url` (every result, errors included), once the batch ended.
    pub output_file_id: Option<String>,
    /// OpenAI's error file id (failed and unrun lines); Anthropic: none.
    pub error_file_id: Option<String>,
    /// Why the provider refused the batch as a whole, if it did.
    pub errors: Vec<String>,
}

/// Why a line was never run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotRunReason {
    Cancelled,
    Expired,
}

/// One line's end, matched to its job by `custom_id`.
#[derive(Clone, Debug, PartialEq)]
pub enum LineResult {
    /// Answered: the body is OpenAI-shaped (as the real-time adapter
    /// returns it), the usage as the provider reported it, the cost at the
    /// provider's batch price when the price table has the model, and the
    /// tier [`Tier::ProviderBatch`](sluice_core::Tier::ProviderBatch).
    Answered { custom_id: String, answer: Answer },
    /// The provider ran the line and it failed. `status` is the HTTP status
    /// the line's error stands for, where the provider gave one; the error
    /// carries the retry decision ([`ProviderError::is_retryable`]).
    Failed {
        custom_id: String,
        status: Option<u16>,
        error: ProviderError,
    },
    /// Never run (the batch was cancelled or expired first): not billed,
    /// and worth sending again.
    NotRun {
        custom_id: String,
        reason: NotRunReason,
    },
}

impl LineResult {
    pub fn custom_id(&self) -> &str {
        match self {
            Self::Answered { custom_id, .. }
            | Self::Failed { custom_id, .. }
            | Self::NotRun { custom_id, .. } => custom_id,
        }
    }

    /// Whether the job should go out again (in real time): a line that was
    /// never run, or whose error another try can cure. `false` for an
    /// answer, and for a refusal (a 4xx) that fails the job.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Answered { .. } => false,
            Self::Failed { error, .. } => error.is_retryable(),
            Self::NotRun { .. } => true,
        }
    }
}

/// What [`BatchApi::results`] read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchResults {
    /// One per line the provider finished or never ran, in the order read
    /// (which is not the order sent).
    pub lines: Vec<LineResult>,
    /// Result lines matched to no job, each with why: unreadable, without
    /// a `custom_id`, with one the batch did not send, or a second result
    /// for one already seen (the first stands). For the log, never a job.
    pub unmatched: Vec<String>,
}

/// The most one batch of a provider may hold; [`BatchApi::submit`] refuses
/// a larger one before sending anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub lines: usize,
    /// The encoded request (OpenAI: the JSONL file; Anthropic: the JSON
    /// body), in bytes.
    pub bytes: usize,
}

#[async_trait]
pub trait BatchApi: Send + Sync {
    /// The provider's name in the config.
    fn provider(&self) -> &str;

    fn limits(&self) -> BatchLimits;

    /// The line that asks `model` (the upstream model name) for a job's
    /// OpenAI-shaped `body` at `endpoint`. An error is the job's alone, and
    /// terminal: this provider cannot express the request (another
    /// endpoint, a chat feature its API lacks, an id it does not accept).
    fn line(
        &self,
        endpoint: Endpoint,
        model: &str,
        custom_id: &str,
        body: &Value,
    ) -> Result<BatchLine, ProviderError>;

    /// Sends `lines` (built by [`BatchApi::line`] for `endpoint`) as one
    /// batch, with `metadata` where the provider keeps it (OpenAI).
    /// Refuses, sending nothing, an empty batch, one over
    /// [`BatchApi::limits`], or one that repeats a `custom_id`.
    ///
    /// An error after the request left may hide a batch the provider did
    /// create (a timeout): the caller that retries may make a second one.
    async fn submit(
        &self,
        endpoint: Endpoint,
        lines: &[BatchLine],
        metadata: &BTreeMap<String, String>,
    ) -> Result<RemoteBatch, ProviderError>;

    async fn status(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError>;

    /// Asks the provider to stop the batch; lines already finished keep
    /// their results. The answer is usually [`RemoteState::Cancelling`].
    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError>;

    /// Every line of `batch` the provider finished (answered or failed) or
    /// never ran, read from the files `batch` names (none yet: nothing).
    /// `model` is the upstream model the lines asked (answers are priced by
    /// it) and `custom_ids` the ids the batch was sent with. A job of a
    /// terminal batch with no line here was not answered by it. An error
    /// is the whole read's; a retryable one (a file that could not be
    /// fetched, or was cut short) is worth reading again.
    async fn results(
        &self,
        batch: &RemoteBatch,
        model: &str,
        custom_ids: &[String],
    ) -> Result<BatchResults, ProviderError>;

    /// The batch created with `metadata[key] == value`, among the
    /// provider's newest hundred, where the provider keeps metadata
    /// (OpenAI); `None` if none is, or the provider cannot say
    /// (Anthropic). Asked before submitting a batch again whose first
    /// submission's fate is unknown, so that it is not submitted twice.
    async fn find(&self, key: &str, value: &str) -> Result<Option<RemoteBatch>, ProviderError>;

    /// Deletes what the provider keeps of an ended batch whose results
    /// were read (OpenAI: its input, output and error files; Anthropic:
    /// the batch and its results). A failure is logged, never returned:
    /// the provider's own retention removes them later.
    async fn forget(&self, batch: &RemoteBatch);
}

/// The Batch API client of `provider` (one of `config`'s), with its prices
/// from `config`'s table and the API key from the environment variable it
/// names (an error if unset).
pub fn batch_api(
    config: &Config,
    provider: &ProviderConfig,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn BatchApi>, SetupError> {
    let base = AdapterBase::new(
        config,
        provider,
        Arc::clone(&metrics),
        None,
        crate::CallHooks::default(),
    )?;
    Ok(match provider.kind {
        ProviderKind::Openai => Arc::new(openai::OpenAiBatches::new(base, provider, metrics)?),
        ProviderKind::Anthropic => {
            Arc::new(anthropic::AnthropicBatches::new(base, provider, metrics)?)
        }
    })
}

/// Refuses, before anything is sent, a batch that is empty, longer than
/// `limits` allow, or that repeats a `custom_id`.
fn check_lines(
    lines: &[BatchLine],
    limits: BatchLimits,
    refuse: impl Fn(String) -> ProviderError,
) -> Result<(), ProviderError> {
    if lines.is_empty() {
        return Err(refuse("a batch needs at least one line".into()));
    }
    if lines.len() > limits.lines {
        return Err(refuse(format!(
            "{} lines is over the provider's {} per batch",
            lines.len(),
            limits.lines
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    for line in lines {
        if !seen.insert(line.custom_id.as_str()) {
            return Err(refuse(format!(
                "custom_id {:?} is on two lines",
                line.custom_id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
