//! What a batch is: its lines, its status and when it reached each, and
//! what became of each line. The engine (`engine`) moves it along; the
//! dialects (`openai`, `anthropic`) render it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::openai::OpenAiBatch;
use crate::error::ApiError;
use crate::routes::call::LineRoute;

/// What only one dialect keeps.
#[derive(Debug)]
pub(crate) enum Kind {
    OpenAi(OpenAiBatch),
    Anthropic,
}

/// Why a batch failed, in OpenAI's shape (`errors.data[*]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BatchError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    /// 1-based, in the input file.
    pub(crate) line: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    /// OpenAI's name, which the stats use for both dialects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }

    /// Still holding enqueued tokens.
    pub(crate) fn is_open(self) -> bool {
        matches!(
            self,
            Status::Validating | Status::InProgress | Status::Finalizing | Status::Cancelling
        )
    }
}

/// When each step happened, as offsets from creation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moments {
    pub(crate) in_progress: Option<Duration>,
    pub(crate) finalizing: Option<Duration>,
    pub(crate) completed: Option<Duration>,
    pub(crate) failed: Option<Duration>,
    pub(crate) expired: Option<Duration>,
    pub(crate) cancelling: Option<Duration>,
    pub(crate) cancelled: Option<Duration>,
    /// Whichever of completed, failed, expired, cancelled happened.
    pub(crate) ended: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(super) route: LineRoute,
    pub(super) created: Instant,
    /// Unix seconds.
    pub(crate) created_at: u64,
    pub(crate) lines: Vec<Line>,
    pub(super) turnaround: Duration,
    pub(crate) expire_after: Duration,
    pub(super) held: bool,
    pub(crate) status: Status,
    /// Why it fails (decided at creation, shown from the next read).
    pub(crate) errors: Vec<BatchError>,
    pub(crate) moments: Moments,
    /// Its tokens per model, held against the quota while it is open.
    pub(super) enqueued: BTreeMap<String, u64>,
    /// Lines finished so far; numbers their results.
    pub(super) finished: u64,
}

#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) custom_id: String,
    pub(super) body: String,
    /// When it is answered, from creation.
    pub(super) due: Duration,
    /// Whether it fails with a 500 (`batch.line_failure`).
    pub(super) fails: bool,
    pub(crate) outcome: Option<Outcome>,
    /// Its place in the order lines finished.
    pub(super) finished: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Answered 200, with this body.
    Answered(Value),
    /// Answered with this error (a 400 from the route, or a line failure).
    Failed(ApiError),
    /// Never ran: the batch was cancelled first.
    Cancelled,
    /// Never ran: the batch expired first.
    Expired,
}

/// The lines of a batch by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) pending: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) expired: u64,
}

impl Batch {
    /// Unix seconds of a moment.
    pub(crate) fn at(&self, moment: Option<Duration>) -> Option<u64> {
        moment.map(|offset| self.created_at.saturating_add(offset.as_secs()))
    }

    /// When it expires, in Unix seconds.
    pub(crate) fn expires_at(&self) -> u64 {
        self.created_at.saturating_add(self.expire_after.as_secs())
    }

    pub(crate) fn counts(&self) -> Counts {
        let mut counts = Counts {
            total: self.lines.len() as u64,
            ..Counts::default()
        };
        for line in &self.lines {
            let counter = match line.outcome {
                None => &mut counts.pending,
                Some(Outcome::Answered(_)) => &mut counts.succeeded,
                Some(Outcome::Failed(_)) => &mut counts.failed,
                Some(Outcome::Cancelled) => &mut counts.cancelled,
                Some(Outcome::Expired) => &mut counts.expired,
            };
            *counter += 1;
        }
        counts
    }

    /// The lines with an outcome: those that ran in the order they
    /// finished, then those that never ran in input order.
    pub(crate) fn results(&self) -> Vec<&Line> {
        let mut ran: Vec<&Line> = self.lines.iter().filter(|l| l.finished.is_some()).collect();
        ran.sort_by_key(|l| l.finished);
        let never = self
            .lines
            .iter()
            .filter(|l| l.finished.is_none() && l.outcome.is_some());
        ran.into_iter().chain(never).collect()
    }

    /// Moves to `status`, reached `at` after creation.
    pub(super) fn enter(&mut self, status: Status, at: Duration) {
        let moments = &mut self.moments;
        let slot = match status {
            Status::Validating => return,
            Status::InProgress => &mut moments.in_progress,
            Status::Finalizing => &mut moments.finalizing,
            Status::Completed => &mut moments.completed,
            Status::Failed => &mut moments.failed,
            Status::Expired => &mut moments.expired,
            Status::Cancelling => &mut moments.cancelling,
            Status::Cancelled => &mut moments.cancelled,
        };
        *slot = Some(at);
        if !status.is_open() {
            moments.ended = Some(at);
        }
        self.status = status;
    }
}
