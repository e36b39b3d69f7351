//! Stage 4, cache lookup: an exact hit, or a semantic neighbour, answers a
//! job at once with its finished record: no limits, no queue, no worker.
//!
//! Refuses nothing: a cache that cannot be read is a miss (counted as an
//! error in the metrics), never a failed request. Writes, for a hit: the
//! finished record, its end event (a hit that cannot be announced is not
//! answered: 503) and its ledger row (cost 0, with what it saved, behind
//! the answer); for a semantic lookup, its calls' ledger rows (the
//! question's embedding, on a process's first lookup the reference texts'
//! that centre the buckets, and the verifier's: the words that differ, or
//! the judge's verdicts) and, for a semantic hit, a sample kept for review.
//! A miss keeps its prompt's vector, for stage 8 to file.

use std::time::Instant;

use chrono::{SubsecRound, Utc};
use sluice_core::cache::verify::Check;
use sluice_core::cache::{CacheKind, CachedAnswer, SemanticSample};
use sluice_core::job::Outcome;
use sluice_core::ledger::LedgerRow;
use sluice_core::{Endpoint, JobRecord, Tier};
use sluice_store::cache::{Candidate, EntryKey};
use sluice_store::tenants::Principal;

use super::validate::NewJob;
use crate::cache::count;
use crate::cache::semantic::{CacheCall, SemanticIndex};
use crate::cache::verify;
use crate::problem::ApiError;
use crate::state::AppState;

/// Looks up every job, concurrently: for each (in their order), its
/// finished record when the cache answered it.
pub(super) async fn all(
    state: &AppState,
    caller: &Principal,
    jobs: &mut [NewJob],
) -> Result<Vec<Option<JobRecord>>, ApiError> {
    futures::future::join_all(jobs.iter_mut().map(|job| one(state, caller, job)))
        .await
        .into_iter()
        .collect()
}

async fn one(
    state: &AppState,
    caller: &Principal,
    job: &mut NewJob,
) -> Result<Option<JobRecord>, ApiError> {
    let Some(plan) = &job.cache else {
        return Ok(None);
    };
    if plan.read {
        match state.cache.get(&plan.entry).await {
            Ok(Some(answer)) => {
                let record = answer_from(state, job, &answer, CacheKind::Exact, None).await?;
                return Ok(Some(record));
            }
            Ok(None) => count(&state.metrics, CacheKind::Exact, "miss"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache; treating as a miss");
                count(&state.metrics, CacheKind::Exact, "error");
            }
        }
    }
    let (Some(index), Some((text, scope))) = (&state.semantic, &plan.semantic) else {
        return Ok(None);
    };
    let started = Instant::now();
    let (calls, embedded) = index.embed(text).await;
    for call in &calls {
        state.cache_rows.write(call_row(job, caller, call)).await;
    }
    let embedded = match embedded {
        Ok(embedded) => embedded,
        Err(e) => {
            tracing::warn!(error = %e, "cannot embed a prompt for the semantic cache");
            count(&state.metrics, CacheKind::Semantic, "error");
            timed(state, started, "error");
            return Ok(None);
        }
    };
    if plan.read {
        match state
            .cache
            .candidates(scope, &embedded.buckets, index.max_candidates())
            .await
        {
            Ok(candidates) => {
                let shortlist = index.shortlist(&embedded.vector, candidates);
                let lookup = Lookup {
                    text,
                    max_error: plan.max_error,
                    started,
                };
                if let Some(record) =
                    verified_hit(state, index, caller, job, lookup, shortlist).await?
                {
                    return Ok(Some(record));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the semantic cache; treating as a miss");
                count(&state.metrics, CacheKind::Semantic, "error");
                timed(state, started, "error");
            }
        }
    }
    if let Some(plan) = &mut job.cache {
        plan.embedded = Some(embedded);
    }
    Ok(None)
}

/// The job finished with the first shortlisted neighbour the verifier
/// lets serve, if any: its sample kept, its verdicts counted, the
/// verifier's calls (word embeddings, judgements) ledger rows.
async fn verified_hit(
    state: &AppState,
    index: &SemanticIndex,
    caller: &Principal,
    job: &NewJob,
    lookup: Lookup<'_>,
    shortlist: Vec<(Candidate, f64)>,
) -> Result<Option<JobRecord>, ApiError> {
    let Lookup {
        text,
        max_error,
        started,
    } = lookup;
    let check = Check::for_error(max_error, index.judge_error());
    let verdicts = verify::first_served(index, text, check, shortlist).await;
    let outcome = match (&verdicts.served, verdicts.failed) {
        (Some(_), _) => "hit",
        (None, true) => "error",
        (None, false) => "miss",
    };
    timed(state, started, outcome);
    for call in &verdicts.calls {
        state.cache_rows.write(call_row(job, caller, call)).await;
    }
    for refusal in &verdicts.refusals {
        state
            .metrics
            .semantic_refusals
            .with_label_values(&[refusal.as_str()])
            .inc();
    }
    let Some(served) = verdicts.served else {
        count(&state.metrics, CacheKind::Semantic, outcome);
        return Ok(None);
    };
    let answer = &served.candidate.answer;
    let record = answer_from(
        state,
        job,
        answer,
        CacheKind::Semantic,
        Some(served.similarity),
    )
    .await?;
    let expected = check.expected_error(index.judge_error());
    state.metrics.semantic_served(expected);
    let sample = SemanticSample {
        job: record.id,
        source_job: answer.job,
        similarity: served.similarity,
        word_similarity: served.word_similarity,
        verified_by: Some(check.into()),
        expected_error: expected,
        question: text.to_owned(),
        cached_question: served.candidate.text.clone(),
        served_at: Utc::now(),
    };
    // A sample is for review: one that cannot be kept fails nothing.
    if let Err(e) = state.cache.add_sample(&caller.tenant_id, &sample).await {
        tracing::warn!(error = %e, "cannot keep a semantic sample");
    }
    Ok(Some(record))
}

/// A semantic lookup under way: the question, the error its job accepts,
/// and when it started.
struct Lookup<'a> {
    text: &'a str,
    max_error: f64,
    started: Instant,
}

/// Observes how long a semantic lookup took to reach `outcome`.
fn timed(state: &AppState, started: Instant, outcome: &str) {
    state
        .metrics
        .semantic_lookup
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
}

/// The job finished with the answer cached at `entry`, if one is there
/// now (a read that fails is a miss).
pub(super) async fn answer_if_cached(
    state: &AppState,
    job: &NewJob,
    entry: &EntryKey,
) -> Result<Option<JobRecord>, ApiError> {
    match state.cache.get(entry).await {
        Ok(Some(answer)) => answer_from(state, job, &answer, CacheKind::Exact, None)
            .await
            .map(Some),
        _ => Ok(None),
    }
}

/// Finishes `job` with a cached answer: stored, announced, its ledger row
/// on its way.
async fn answer_from(
    state: &AppState,
    job: &NewJob,
    answer: &CachedAnswer,
    kind: CacheKind,
    similarity: Option<f64>,
) -> Result<JobRecord, ApiError> {
    // Microseconds, as the store keeps end times: the 200, a later GET and
    // the webhook show the same job.
    let now = Utc::now().trunc_subsecs(6);
    let mut record = job.record.clone();
    record.started_at = Some(now);
    let hit = Outcome::Cached {
        answer: answer.clone(),
        info: answer.info(kind, similarity),
    };
    record.end(&hit, now);
    state.ingest.create(vec![record.clone()]).await?;
    // Its webhook hears of it like of any end; a hit that cannot be
    // announced is not answered (the caller's retry makes another).
    state
        .events
        .ended(std::slice::from_ref(&record))
        .await
        .map_err(|e| ApiError::QueueUnavailable(format!("cannot announce the job's end: {e}")))?;
    count(&state.metrics, kind, "hit");
    state.metrics.cache_saved_micros.inc_by(answer.cost_micros);
    state
        .metrics
        .jobs_finished
        .with_label_values(&["succeeded"])
        .inc();
    state.metrics.answered(Tier::Cache, 1);
    if let Some(row) = LedgerRow::from_record(&record, None) {
        state.cache_rows.write(row).await;
    }
    Ok(record)
}

/// The ledger row of a semantic lookup's call (an embedding, a
/// judgement): billed to the tenant, as the provider billed it, labelled
/// as the semantic cache's (`purpose`: `semantic_cache` for embeddings,
/// `semantic_cache_judge` for the judge).
fn call_row(job: &NewJob, caller: &Principal, call: &CacheCall) -> LedgerRow {
    let purpose = match call.endpoint {
        Endpoint::Embeddings => "semantic_cache",
        _ => "semantic_cache_judge",
    };
    let mut metadata = job.record.metadata.clone();
    metadata.insert("purpose".into(), purpose.into());
    let call = sluice_core::ledger::Call {
        id: call.id,
        tenant_id: caller.tenant_id.clone(),
        key_id: Some(caller.key_id.clone()),
        model: call.model.clone(),
        provider: call.provider.clone(),
        endpoint: call.endpoint,
        metadata,
        usage: call.usage,
        cost_micros: call.cost_micros,
    };
    LedgerRow::for_call(call, Utc::now())
}
