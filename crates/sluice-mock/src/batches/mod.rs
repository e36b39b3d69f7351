//! The providers' Batch APIs: OpenAI's Files and Batches (`files`,
//! `openai`) and Anthropic's Message Batches (`anthropic`), two dialects
//! over one engine (`engine`) moving batches (`batch`) along.
//!
//! A batch's lines are answered by the same code as the real-time routes
//! (`routes::call`): a line's answer is the real-time answer to the same
//! body (text, ids, usage; the prefix cache applies as it does in real
//! time), billed at the model's batch price under `by_tier.batch` (one
//! request per line answered). Lines are not counted as requests in the
//! stats (`/mock/stats` has `batches` instead), pass no rate limit and no
//! fault injection, and take no latency: a batch's pace is its own,
//! [`BatchOptions`].
//!
//! How a batch progresses is in `engine`; what the knobs do:
//!
//! - `turnaround_ms` (± `turnaround_jitter`, seeded): creation to
//!   `completed`; lines finish evenly over it. Benchmarks scale it as
//!   they scale the other times.
//! - `line_failure`: the share of lines answered 500 instead (not billed).
//! - `expire_after_ms`: a batch not done by then expires; `expires_at`.
//! - `hold`: the share of batches (or `true`: all) that answer nothing
//!   and stay `in_progress` until cancelled or expired.
//! - `refuse`: the share of batch creations (or `true`: all) refused.
//! - `max_enqueued_tokens`: the most tokens (prompt plus most completion)
//!   of one model in batches not yet ended; a batch that would pass it is
//!   refused with `token_limit_exceeded`. Separate from the rate limits.
//!
//! Every draw is seeded by the seed and the batch's number (and the line's
//! index), see [`dice`](crate::dice). `POST /mock/reset` forgets every file
//! and batch and restarts their numbering.

use clap::Args;
use serde::Deserialize;

use crate::ratio::Ratio;

pub(crate) mod anthropic;
pub(crate) mod batch;
pub(crate) mod engine;
pub(crate) mod files;
mod multipart;
pub(crate) mod openai;

pub(crate) use engine::Store;

/// A batch's turnaround unless configured: a minute.
const TURNAROUND_MS: u64 = 60_000;

/// When a batch expires unless configured: OpenAI's and Anthropic's 24 h.
const EXPIRE_AFTER_MS: u64 = 24 * 60 * 60 * 1_000;

/// `[batch]` and the `--batch-*` flags: how provider batches behave.
/// [`Default`] completes every batch in a minute, fails and refuses
/// nothing, holds nothing and has no quota.
#[derive(Args, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Provider batches")]
pub struct BatchOptions {
    /// How long a batch takes from creation to completed, in milliseconds,
    /// its lines finishing evenly over it (the median; see
    /// --batch-turnaround-jitter).
    #[arg(
        long = "batch-turnaround-ms",
        value_name = "MS",
        default_value_t = TURNAROUND_MS
    )]
    pub turnaround_ms: u64,
    /// A batch's turnaround varies uniformly by up to this fraction either
    /// way, seeded by --seed.
    #[arg(
        long = "batch-turnaround-jitter",
        value_name = "FRACTION",
        default_value_t
    )]
    pub turnaround_jitter: Ratio,
    /// Share of batch lines answered 500 in the error file instead (not
    /// billed), seeded by --seed.
    #[arg(long = "batch-line-failure", value_name = "FRACTION", default_value_t)]
    pub line_failure: Ratio,
    /// A batch not done this many milliseconds after its creation expires:
    /// the lines done are kept, the others expire.
    #[arg(
        long = "batch-expire-after-ms",
        value_name = "MS",
        default_value_t = EXPIRE_AFTER_MS
    )]
    pub expire_after_ms: u64,
    /// Share of batches (true: all) that answer nothing and stay in
    /// progress until cancelled or expired, seeded by --seed.
    #[arg(
        long = "batch-hold",
        value_name = "FRACTION",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t
    )]
    pub hold: Ratio,
    /// Share of batch creations (true: all) refused: an OpenAI batch
    /// fails, an Anthropic creation answers 400. Seeded by --seed.
    #[arg(
        long = "batch-refuse",
        value_name = "FRACTION",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t
    )]
    pub refuse: Ratio,
    /// Most tokens (prompt + max completion) of one model enqueued in
    /// batches not yet ended; past it a batch is refused
    /// (token_limit_exceeded). Unlimited when not given.
    #[arg(long = "batch-max-enqueued-tokens", value_name = "TOKENS")]
    pub max_enqueued_tokens: Option<u64>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            turnaround_ms: TURNAROUND_MS,
            turnaround_jitter: Ratio::ZERO,
            line_failure: Ratio::ZERO,
            expire_after_ms: EXPIRE_AFTER_MS,
            hold: Ratio::ZERO,
            refuse: Ratio::ZERO,
            max_enqueued_tokens: None,
        }
    }
}
