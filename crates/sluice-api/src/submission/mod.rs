//! The submission pipeline. Every way a job comes in (`POST /v1/jobs`,
//! `POST /v1/jobs/batch`, the OpenAI-compatible endpoints) goes through
//! [`submit`]; handlers only parse the request and answer with what it
//! returns. The stages run in this order, each in its own module, whose
//! docs state its contract:
//!
//! | stage | may refuse | writes |
//! |---|---|---|
//! | 1. [`validate`] | 422 | nothing |
//! | 2. [`idempotency`] (one job with an `Idempotency-Key`) | 409, 422 | the key's claim, released if the job is not accepted |
//! | 3. [`targets`]: webhook targets | 422 | nothing |
//! | 4. [`lookup`]: the cache | nothing (a failing cache is a miss) | a hit's finished record, end event and ledger row; a semantic lookup's embedding row |
//! | 5. [`budget`] | 402 | nothing |
//! | 6. [`limits`] | 429 | the jobs and tokens taken from the tenant's minute |
//! | 7. [`join`]: an identical job in flight | nothing | a follower's record, on its leader's list; a leader's claim |
//! | 8. [`publish`]: create and publish | 503, per job | the records, the prompt vectors, the messages; a job the broker did not confirm is marked failed; the leaders' claims settled |
//!
//! Any stage that reads or writes a store answers 503 when the store does
//! not. Stages 5 and 6 see only the jobs the cache did not answer, and take
//! them all at once. After validation a single job is a batch of one;
//! identical jobs within one batch join in two rounds (see [`join`]).

pub mod budget;
pub mod idempotency;
pub mod join;
pub mod limits;
pub mod lookup;
pub mod outcome;
pub mod publish;
pub mod targets;
pub mod validate;

use chrono::Utc;
use sluice_store::tenants::Principal;

use crate::problem::ApiError;
use crate::state::AppState;
pub use idempotency::IdempotencyKey;
pub use outcome::{Envelopes, Outcome, Request, Submitted};
pub use validate::NewJob;

/// Runs `request` through every stage (see the module docs).
pub async fn submit(
    state: &AppState,
    caller: &Principal,
    request: Request,
) -> Result<Submitted, ApiError> {
    let Request {
        envelopes,
        trace_id,
        idempotency,
        stream,
    } = request;
    let fingerprint = match &envelopes {
        Envelopes::One(raw) if idempotency.is_some() => idempotency::fingerprint(raw),
        _ => String::new(),
    };
    let mut jobs = validate::check_all(envelopes, &state.config, caller, &trace_id, Utc::now())?;
    for job in &mut jobs {
        job.message.stream = stream;
    }
    let claimed = match (idempotency, jobs.as_slice()) {
        (Some(key), [job]) => {
            let claim = idempotency::claim(state, caller, &key, &fingerprint, job.record.id);
            if let Some(record) = claim.await? {
                return Ok(Submitted {
                    outcomes: vec![Outcome::Replayed(record)],
                    limit: None,
                });
            }
            Some((key, job.record.id))
        }
        _ => None,
    };
    let submitted = admit(state, caller, jobs).await;
    if let Some((key, job)) = claimed {
        if !submitted.as_ref().is_ok_and(Submitted::accepted_any) {
            // Not accepted: the key is free for the client's retry.
            idempotency::release(state, caller, &key, job).await;
        }
    }
    submitted
}

/// Stages 4, 7 and 8 for the lines of a Batch API batch (`crate::batches`),
/// checked by [`validate::check_line`]. Lines carry no webhook of their
/// own (the batch's events go to the tenant's endpoints), and the batch as
/// a whole was held to the tenant's budget and batch queue when it was
/// created, not each line to the per-minute limits. One outcome per job,
/// in order.
pub(crate) async fn admit_lines(
    state: &AppState,
    caller: &Principal,
    mut jobs: Vec<NewJob>,
) -> Result<Vec<Outcome>, ApiError> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut missed = Vec::new();
    let hits = lookup::all(state, caller, &mut jobs).await?;
    for (i, (job, hit)) in jobs.into_iter().zip(hits).enumerate() {
        match hit {
            Some(record) => outcomes.push((i, Outcome::Answered(record))),
            None => missed.push((i, job)),
        }
    }
    for round in join::rounds(missed) {
        let (decided, to_publish) = join::all(state, round).await;
        outcomes.extend(decided);
        outcomes.extend(publish::all(state, to_publish).await);
    }
    outcomes.sort_unstable_by_key(|(i, _)| *i);
    Ok(outcomes.into_iter().map(|(_, o)| o).collect())
}

/// Stages 3 to 8 for checked jobs. Each job is carried with its position
/// from stage to stage, and the stage that decides its fate turns it into
/// its outcome, so every job gets exactly one.
async fn admit(
    state: &AppState,
    caller: &Principal,
    mut jobs: Vec<NewJob>,
) -> Result<Submitted, ApiError> {
    targets::resolve(state, &caller.tenant_id, &mut jobs).await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut missed = Vec::new();
    let hits = lookup::all(state, caller, &mut jobs).await?;
    for (i, (job, hit)) in jobs.into_iter().zip(hits).enumerate() {
        match hit {
            Some(record) => outcomes.push((i, Outcome::Answered(record))),
            None => missed.push((i, job)),
        }
    }
    let mut limit = None;
    if !missed.is_empty() {
        budget::check(state, caller).await?;
        let tokens = missed.iter().map(|(_, job)| job.tokens()).sum();
        limit = limits::admit(state, caller, missed.len() as u64, tokens).await?;
        for round in join::rounds(missed) {
            let (decided, to_publish) = join::all(state, round).await;
            outcomes.extend(decided);
            outcomes.extend(publish::all(state, to_publish).await);
        }
    }
    outcomes.sort_unstable_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    for outcome in &outcomes {
        if let Outcome::Queued(record) = outcome {
            state
                .metrics
                .jobs_submitted
                .with_label_values(&[record.priority.as_str()])
                .inc();
        }
    }
    Ok(Submitted { outcomes, limit })
}
