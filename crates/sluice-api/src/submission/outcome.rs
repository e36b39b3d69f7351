//! What goes into the pipeline (a [`Request`]) and what comes out (a
//! [`Submitted`], one [`Outcome`] per job).

use serde_json::Value;
use sluice_core::JobRecord;

use super::idempotency::IdempotencyKey;
use crate::problem::{ApiError, RateLimitHeaders};

/// What a caller submitted, still unchecked.
pub struct Request {
    pub(super) envelopes: Envelopes,
    pub(super) trace_id: String,
    pub(super) idempotency: Option<IdempotencyKey>,
    /// Its callers read the answers as they are written (`JobMessage::stream`).
    pub(super) stream: bool,
}

/// One job envelope (`POST /v1/jobs`), or a batch of them.
pub enum Envelopes {
    One(Value),
    Batch(Vec<Value>),
}

impl Request {
    /// One job, with the trace it belongs to.
    pub fn one(envelope: Value, trace_id: String) -> Self {
        Self {
            envelopes: Envelopes::One(envelope),
            trace_id,
            idempotency: None,
            stream: false,
        }
    }

    /// A batch of jobs (`{"jobs": [...]}`'s entries).
    pub fn batch(envelopes: Vec<Value>, trace_id: String) -> Self {
        Self {
            envelopes: Envelopes::Batch(envelopes),
            trace_id,
            idempotency: None,
            stream: false,
        }
    }

    /// Jobs whose callers read their answers as they are written: their
    /// provider calls stream, and their chunks are relayed.
    pub fn streaming(mut self) -> Self {
        self.stream = true;
        self
    }

    /// One job that a repeat with the same key must not submit again.
    pub fn with_idempotency(mut self, key: Option<IdempotencyKey>) -> Self {
        self.idempotency = key;
        self
    }
}

/// What became of one submitted job.
pub enum Outcome {
    /// Answered from the cache: the job is already finished.
    Answered(JobRecord),
    /// Queued (the broker confirmed it), or joined an identical job in
    /// flight, with which it will end.
    Queued(JobRecord),
    /// The job an earlier request with the same `Idempotency-Key` made.
    Replayed(JobRecord),
    /// Not accepted: nothing of it will run (a record already written is
    /// marked failed).
    Refused(ApiError),
}

/// The answer to a submission.
pub struct Submitted {
    /// One per job, in the order submitted.
    pub outcomes: Vec<Outcome>,
    /// The tenant's rate-limit state after this submission, when it has
    /// limits and jobs took from them.
    pub limit: Option<RateLimitHeaders>,
}

impl Submitted {
    /// The outcome of a submission of one job.
    pub fn into_one(mut self) -> (Outcome, Option<RateLimitHeaders>) {
        // A submission has exactly one outcome per job (each stage hands
        // every job it takes on, see `admit`); this is the one place that
        // says what an empty answer would mean.
        let outcome = self.outcomes.pop().unwrap_or_else(|| {
            Outcome::Refused(ApiError::QueueUnavailable(
                "the job was not published".into(),
            ))
        });
        (outcome, self.limit)
    }

    pub(super) fn accepted_any(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| !matches!(o, Outcome::Refused(_)))
    }
}
