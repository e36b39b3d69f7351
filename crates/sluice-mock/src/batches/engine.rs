//! The batch engine both dialects share: whether a batch is accepted, when
//! each of its lines is answered, and how it ends.
//!
//! Nothing runs in the background. A batch's timeline is fixed when it is
//! created, as offsets from its creation, and every read of it (and of
//! the bill and the stats) first brings it up to the present
//! ([`Store::advance`]): the lines due by now are answered then, in the
//! order they fall due, by the real-time code and billed at the batch
//! price. So a batch looks the same whenever it is polled, and a paused
//! clock drives it exactly.
//!
//! The timeline of a batch of `n` lines with turnaround `T`:
//!
//! - created: `validating` (OpenAI) or `in_progress` (Anthropic);
//!   `validating` lasts until the next read, which makes it `failed` (when
//!   creation found it invalid) or `in_progress`;
//! - lines finish one by one, in a seeded order unrelated to the input
//!   order, the `k`-th at `T × k / (n + 1)`, so `request_counts` grows;
//! - `finalizing` from the last line until `T`, then `completed`;
//! - a held batch answers nothing and stays `in_progress`;
//! - past `expire_after`, a batch not done is `expired`: the lines done are
//!   kept, the others expire;
//! - cancelling keeps the lines done by then; `cancelling` lasts until the
//!   next read, which makes it `cancelled`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::batch::{Batch, BatchError, Kind, Line, Moments, Outcome, Status};
use super::files::Files;
use super::openai;
use crate::dice::{draw, line, spread, Purpose};
use crate::error::ApiError;
use crate::routes::call::LineRoute;
use crate::routes::unix_now;
use crate::state::Shared;
use crate::stats::BatchStats;

/// The files and the batches, behind one lock (`Shared::batches`).
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) files: Files,
    /// Oldest first.
    batches: Vec<Batch>,
    /// Batches created since start or reset: the next one's number.
    created: u64,
}

/// A new batch, as its dialect read it.
pub(crate) struct NewBatch {
    pub(crate) route: LineRoute,
    /// `(custom_id, body)` in input order; each body is JSON text.
    pub(crate) lines: Vec<(String, String)>,
    pub(crate) kind: Kind,
    /// What the dialect found wrong with the input; the batch fails with it.
    pub(crate) invalid: Vec<BatchError>,
}

impl Store {
    /// Judges and stores a new batch. OpenAI validates after creation: a
    /// batch found wrong is stored and fails at the next read. Anthropic
    /// validates before: the errors are returned and nothing is stored.
    pub(crate) fn create(
        &mut self,
        shared: &Shared,
        new: NewBatch,
        now: Instant,
    ) -> Result<&Batch, Vec<BatchError>> {
        let options = shared.options();
        let (seed, knobs) = (options.seed, &options.batch);
        let number = self.created;
        self.created = self.created.saturating_add(1);

        let enqueued = estimate(shared, new.route, &new.lines);
        let errors = if !new.invalid.is_empty() {
            new.invalid
        } else if knobs.refuse.hits(draw(seed, number, Purpose::Refuse)) {
            vec![BatchError {
                code: "refused",
                message: "The batch was refused (injected by the mock: batch.refuse).".into(),
                param: None,
                line: None,
            }]
        } else {
            self.over_quota(knobs.max_enqueued_tokens, &enqueued)
                .into_iter()
                .collect()
        };
        if !errors.is_empty() && matches!(new.kind, Kind::Anthropic) {
            return Err(errors);
        }
        // A batch that fails holds none of the quota, even while validating.
        let enqueued = if errors.is_empty() {
            enqueued
        } else {
            BTreeMap::new()
        };

        let turnaround = spread(
            Duration::from_millis(knobs.turnaround_ms),
            knobs.turnaround_jitter,
            draw(seed, number, Purpose::Turnaround),
        );
        let n = new.lines.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| draw(seed, line(number, i), Purpose::LineOrder));
        let mut due = vec![Duration::ZERO; n];
        for (rank, &index) in order.iter().enumerate() {
            let nanos = turnaround.as_nanos() * (rank as u128 + 1) / (n as u128 + 1);
            due[index] = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
        let lines = new
            .lines
            .into_iter()
            .zip(due)
            .enumerate()
            .map(|(i, ((custom_id, body), due))| Line {
                custom_id,
                body,
                due,
                fails: knobs
                    .line_failure
                    .hits(draw(seed, line(number, i), Purpose::LineFailure)),
                outcome: None,
                finished: None,
            })
            .collect();
        let (prefix, salt) = match &new.kind {
            Kind::OpenAi(batch) => ("batch_", batch.input_file_id.as_str()),
            Kind::Anthropic => ("msgbatch_", "messages"),
        };
        let mut batch = Batch {
            id: crate::routes::response_id(prefix, format!("{number}:{salt}").as_bytes()),
            kind: new.kind,
            route: new.route,
            created: now,
            created_at: unix_now(),
            lines,
            turnaround,
            expire_after: Duration::from_millis(knobs.expire_after_ms),
            held: knobs.hold.hits(draw(seed, number, Purpose::Hold)),
            status: Status::Validating,
            errors,
            moments: Moments::default(),
            enqueued,
            finished: 0,
        };
        if matches!(batch.kind, Kind::Anthropic) {
            batch.enter(Status::InProgress, Duration::ZERO);
        }
        self.batches.push(batch);
        let stored = self.batches.len() - 1;
        Ok(&self.batches[stored])
    }

    /// The quota error, if `new` tokens on top of what the open batches
    /// hold exceed `limit` for one of their models.
    fn over_quota(&self, limit: Option<u64>, new: &BTreeMap<String, u64>) -> Option<BatchError> {
        let limit = limit?;
        new.iter().find_map(|(model, &tokens)| {
            let held: u64 = self
                .batches
                .iter()
                .filter(|b| b.status.is_open())
                .filter_map(|b| b.enqueued.get(model))
                .sum();
            (held.saturating_add(tokens) > limit).then(|| BatchError {
                code: "token_limit_exceeded",
                message: format!(
                    "Enqueued token limit reached for {model} in organization org-mock. \
                     Limit: {limit} enqueued tokens. Please try again once some \
                     in_progress batches have been completed."
                ),
                param: None,
                line: None,
            })
        })
    }

    /// The batch `id`, brought up to `now`.
    pub(crate) fn get(&mut self, shared: &Shared, id: &str, now: Instant) -> Option<&Batch> {
        let index = self.batches.iter().position(|b| b.id == id)?;
        let batch = &mut self.batches[index];
        advance(batch, &mut self.files, shared, now);
        Some(&self.batches[index])
    }

    /// Every batch, brought up to `now`, newest first.
    pub(crate) fn all(&mut self, shared: &Shared, now: Instant) -> impl Iterator<Item = &Batch> {
        self.advance(shared, now);
        self.batches.iter().rev()
    }

    /// Brings every open batch up to `now`.
    pub(crate) fn advance(&mut self, shared: &Shared, now: Instant) {
        for batch in &mut self.batches {
            advance(batch, &mut self.files, shared, now);
        }
    }

    /// Cancels batch `id` at `now`, keeping the lines done by then; `Err`
    /// with its status when it has already ended (`None` when unknown).
    pub(crate) fn cancel(
        &mut self,
        shared: &Shared,
        id: &str,
        now: Instant,
    ) -> Option<Result<&Batch, Status>> {
        let index = self.batches.iter().position(|b| b.id == id)?;
        let batch = &mut self.batches[index];
        advance(batch, &mut self.files, shared, now);
        match batch.status {
            Status::InProgress | Status::Finalizing => {
                let at = now.saturating_duration_since(batch.created);
                batch.enter(Status::Cancelling, at);
            }
            Status::Cancelling => {}
            ended => return Some(Err(ended)),
        }
        Some(Ok(&self.batches[index]))
    }

    /// Forgets batch `id` if it has ended; `Err` with its status if not.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Result<(), Status>> {
        let index = self.batches.iter().position(|b| b.id == id)?;
        let status = self.batches[index].status;
        if status.is_open() {
            return Some(Err(status));
        }
        self.batches.remove(index);
        Some(Ok(()))
    }

    /// Batches by status and lines by outcome, for `/mock/stats`.
    pub(crate) fn stats(&self) -> BatchStats {
        let mut stats = BatchStats::default();
        for batch in &self.batches {
            *stats
                .by_status
                .entry(batch.status.as_str().to_owned())
                .or_default() += 1;
            stats.lines.add(&batch.counts());
        }
        stats
    }
}

/// Each line's model and token estimate (prompt plus most completion),
/// summed per model; a line the route would refuse counts for nothing.
fn estimate(
    shared: &Shared,
    route: LineRoute,
    lines: &[(String, String)],
) -> BTreeMap<String, u64> {
    let mut tokens = BTreeMap::new();
    for (_, body) in lines {
        if let Ok((model, estimate)) = route.estimate(shared, body.as_bytes()) {
            let held: &mut u64 = tokens.entry(model).or_default();
            *held = held.saturating_add(estimate);
        }
    }
    tokens
}

/// Brings `batch` up to `now` by the timeline in the module documentation.
fn advance(batch: &mut Batch, files: &mut Files, shared: &Shared, now: Instant) {
    let elapsed = now.saturating_duration_since(batch.created);
    match batch.status {
        Status::Validating if batch.errors.is_empty() => batch.enter(Status::InProgress, elapsed),
        Status::Validating => return finish(batch, files, Status::Failed, elapsed),
        Status::Cancelling => return finish(batch, files, Status::Cancelled, elapsed),
        Status::InProgress | Status::Finalizing => {}
        Status::Failed | Status::Completed | Status::Expired | Status::Cancelled => return,
    }
    let horizon = elapsed.min(batch.expire_after);
    if !batch.held {
        let mut due: Vec<usize> = (0..batch.lines.len())
            .filter(|&i| batch.lines[i].outcome.is_none() && batch.lines[i].due <= horizon)
            .collect();
        due.sort_by_key(|&i| batch.lines[i].due);
        for i in due {
            answer(batch, i, shared);
        }
    }
    if batch.lines.iter().all(|l| l.outcome.is_some()) {
        let last = batch.lines.iter().map(|l| l.due).max().unwrap_or_default();
        if batch.status == Status::InProgress {
            batch.enter(Status::Finalizing, last);
        }
        if elapsed >= batch.turnaround {
            finish(batch, files, Status::Completed, batch.turnaround.max(last));
        }
    } else if elapsed >= batch.expire_after {
        finish(batch, files, Status::Expired, batch.expire_after);
    }
}

/// Answers line `index` as the real-time route would (or fails it).
fn answer(batch: &mut Batch, index: usize, shared: &Shared) {
    let route = batch.route;
    let order = batch.finished;
    batch.finished = batch.finished.saturating_add(1);
    let line = &mut batch.lines[index];
    let outcome = if line.fails {
        Outcome::Failed(ApiError::line_failure())
    } else {
        match route.answer(shared, line.body.as_bytes()) {
            Ok(body) => Outcome::Answered(body),
            Err(error) => Outcome::Failed(error),
        }
    };
    line.outcome = Some(outcome);
    line.finished = Some(order);
}

/// Ends `batch` with `status` at `at`: the lines that never ran are
/// marked so, and an OpenAI batch writes its result files.
fn finish(batch: &mut Batch, files: &mut Files, status: Status, at: Duration) {
    let never = match status {
        Status::Cancelled => Some(Outcome::Cancelled),
        Status::Expired => Some(Outcome::Expired),
        _ => None,
    };
    if let Some(never) = never {
        for line in batch.lines.iter_mut().filter(|l| l.outcome.is_none()) {
            line.outcome = Some(never.clone());
        }
    }
    batch.enter(status, at);
    if status != Status::Failed {
        openai::write_results(batch, files);
    }
}
