//! The cache at the API, in the order a submission meets it:
//!
//! 1. [`lookup`], before limits and budget: an exact hit, or a semantic
//!    neighbour, answers at once with the finished job (no queue, no
//!    worker); the hit's ledger row (cost 0, and what it saved) is written
//!    behind the answer.
//! 2. [`join`], after them: an identical job already queued or running is
//!    joined (this job ends with it, with its own id); otherwise this job
//!    claims the request and leads later identical ones.
//! 3. [`file`] and [`settle`], around the publish: the prompt's vector is
//!    filed for the semantic cache, and the claim goes live once the
//!    broker confirmed the job (or is dropped if it did not).
//!
//! The cache never breaks a submission: a cache that cannot be read is a
//! miss (counted as an error in the metrics), never a failed request.

pub mod batch;
pub mod ledger;
pub mod plan;
pub mod semantic;

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::cache::{CacheKind, CachedAnswer};
use sluice_core::ledger::LedgerRow;
use sluice_core::{Endpoint, JobId, JobRecord, JobStatus};
use sluice_store::cache::{Claim, EntryKey};
use sluice_store::tenants::Principal;
use utoipa::{IntoParams, ToSchema};

use crate::extract::Caller;
use crate::problem::{ApiError, Problem};
use crate::submit::Accepted;
use crate::AppState;

/// How long a leader's claim stands before the broker confirmed its job;
/// past it (the leader's API died, say), identical requests stop waiting
/// for that leader and one of them claims the request instead.
const PENDING_TTL: Duration = Duration::from_secs(5);
/// How often an identical request looks again at a pending leader: from
/// the first to the last interval, doubling (a confirm takes milliseconds).
const FIRST_POLL: Duration = Duration::from_millis(2);
const LAST_POLL: Duration = Duration::from_millis(50);
/// Looks at the in-flight map at most this often for one request (more
/// than a pending claim can last at the last interval), then goes alone.
const MAX_LOOKS: u32 = 150;

fn count(state: &AppState, kind: CacheKind, outcome: &str) {
    state
        .metrics
        .cache_requests
        .with_label_values(&[kind.as_str(), outcome])
        .inc();
}

/// The finished job for an answer found in the cache, stored, with its
/// ledger row on its way.
async fn hit(
    state: &AppState,
    accepted: &Accepted,
    answer: &CachedAnswer,
    kind: CacheKind,
    similarity: Option<f64>,
) -> Result<JobRecord, ApiError> {
    // Microseconds, as the store keeps end times: the 200, a later GET and
    // the webhook show the same job.
    let now = Utc::now().trunc_subsecs(6);
    let mut record = accepted.record.clone();
    record.status = JobStatus::Succeeded;
    record.started_at = Some(now);
    record.finished_at = Some(now);
    record.result = Some(answer.result.clone());
    record.usage = Some(answer.usage);
    record.provider = Some(answer.provider.clone());
    record.cost_micros = Some(0);
    record.cached = true;
    record.cache = Some(answer.info(kind, similarity));
    state.store.create(std::slice::from_ref(&record)).await?;
    // Its webhook hears of it like of any end; a hit that cannot be
    // announced is not answered (the caller's retry makes another).
    state
        .events
        .ended(std::slice::from_ref(&record))
        .await
        .map_err(|e| ApiError::QueueUnavailable(format!("cannot announce the job's end: {e}")))?;
    count(state, kind, "hit");
    state.metrics.cache_saved_micros.inc_by(answer.cost_micros);
    state
        .metrics
        .jobs_finished
        .with_label_values(&["succeeded"])
        .inc();
    if let Some(row) = LedgerRow::from_record(&record, None) {
        state.cache_rows.write(row).await;
    }
    Ok(record)
}

/// The job answered from `entry`, if an answer is there now (a read that
/// fails is a miss: the job goes on to the provider).
async fn hit_if_cached(
    state: &AppState,
    accepted: &Accepted,
    entry: &EntryKey,
) -> Result<Option<JobRecord>, ApiError> {
    match state.cache.get(entry).await {
        Ok(Some(answer)) => hit(state, accepted, &answer, CacheKind::Exact, None)
            .await
            .map(Some),
        _ => Ok(None),
    }
}

/// Answers the job from the cache, if it can (see the module docs).
pub(crate) async fn lookup(
    state: &AppState,
    caller: &Principal,
    accepted: &mut Accepted,
) -> Result<Option<JobRecord>, ApiError> {
    let Some(plan) = &accepted.cache else {
        return Ok(None);
    };
    if plan.read {
        match state.cache.get(&plan.entry).await {
            Ok(Some(answer)) => {
                return hit(state, accepted, &answer, CacheKind::Exact, None)
                    .await
                    .map(Some);
            }
            Ok(None) => count(state, CacheKind::Exact, "miss"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache; treating as a miss");
                count(state, CacheKind::Exact, "error");
            }
        }
    }
    let (Some(index), Some((text, scope))) = (&state.semantic, &plan.semantic) else {
        return Ok(None);
    };
    let (embedded, call) = match index.embed(text).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, "cannot embed a prompt for the semantic cache");
            count(state, CacheKind::Semantic, "error");
            return Ok(None);
        }
    };
    state
        .cache_rows
        .write(embed_row(accepted, caller, &call))
        .await;
    if plan.read {
        match state
            .cache
            .candidates(scope, &embedded.buckets, index.max_candidates())
            .await
        {
            Ok(candidates) => {
                if let Some((answer, similarity)) = index.best(&embedded.vector, candidates) {
                    return hit(
                        state,
                        accepted,
                        &answer,
                        CacheKind::Semantic,
                        Some(similarity),
                    )
                    .await
                    .map(Some);
                }
                count(state, CacheKind::Semantic, "miss");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the semantic cache; treating as a miss");
                count(state, CacheKind::Semantic, "error");
            }
        }
    }
    if let Some(plan) = &mut accepted.cache {
        plan.embedded = Some(embedded);
    }
    Ok(None)
}

/// The ledger row of a prompt's embedding call: billed to the tenant, as
/// the provider billed it, labelled as the semantic cache's.
fn embed_row(accepted: &Accepted, caller: &Principal, call: &semantic::EmbedCall) -> LedgerRow {
    let mut metadata = accepted.record.metadata.clone();
    metadata.insert("purpose".into(), "semantic_cache".into());
    let call = sluice_core::ledger::Call {
        id: call.id,
        tenant_id: caller.tenant_id.clone(),
        key_id: Some(caller.key_id.clone()),
        model: call.model.clone(),
        provider: call.provider.clone(),
        endpoint: Endpoint::Embeddings,
        metadata,
        usage: call.usage,
        cost_micros: call.cost_micros,
    };
    LedgerRow::for_call(call, Utc::now())
}

/// How a job meets the identical jobs in flight.
pub(crate) enum Joined {
    /// It follows one: its record is stored, queued; it ends with it.
    Follows(JobRecord),
    /// The one it would have followed just ended; its answer is cached.
    Hit(JobRecord),
    /// It leads: publish it, then [`settle`] the claim.
    Leads,
    /// It goes alone.
    Alone,
}

/// Joins an identical job in flight, or claims the request (module docs).
pub(crate) async fn join(state: &AppState, accepted: &mut Accepted) -> Result<Joined, ApiError> {
    let Some(plan) = accepted.cache.as_ref().filter(|p| p.read) else {
        return Ok(Joined::Alone);
    };
    let entry = plan.entry.clone();
    let id = accepted.record.id;
    let mut poll = FIRST_POLL;
    for _ in 0..MAX_LOOKS {
        let claim = match state.cache.claim(&entry, id, PENDING_TTL).await {
            Ok(claim) => claim,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a request in flight; going alone");
                count(state, CacheKind::Inflight, "error");
                return Ok(Joined::Alone);
            }
        };
        match claim {
            Claim::Leader => {
                // An identical job may have ended between the lookup and
                // the claim: its worker caches the answer before it frees
                // the claim, so a claim that follows the free sees it.
                if let Some(record) = hit_if_cached(state, accepted, &entry).await? {
                    if let Err(e) = state.cache.abandon(&entry, id).await {
                        tracing::warn!(error = %e, "cannot drop an in-flight claim");
                    }
                    return Ok(Joined::Hit(record));
                }
                count(state, CacheKind::Inflight, "miss");
                if let Some(directive) = &mut accepted.message.cache {
                    directive.leads = true;
                }
                return Ok(Joined::Leads);
            }
            Claim::Pending(_) => {
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(LAST_POLL);
            }
            Claim::Live(leader) => {
                // The record first: the leader's worker ends it by id.
                state
                    .store
                    .create(std::slice::from_ref(&accepted.record))
                    .await?;
                let retention = Duration::from_secs(state.config.jobs.retention_s);
                match state
                    .cache
                    .follow(&entry, leader, &accepted.message, retention)
                    .await
                {
                    Ok(true) => {
                        count(state, CacheKind::Inflight, "hit");
                        state
                            .metrics
                            .jobs_submitted
                            .with_label_values(&[accepted.record.priority.as_str()])
                            .inc();
                        return Ok(Joined::Follows(accepted.record.clone()));
                    }
                    Ok(false) => {
                        // The leader ended: its answer may be cached now.
                        if let Some(record) = hit_if_cached(state, accepted, &entry).await? {
                            return Ok(Joined::Hit(record));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot join a request in flight; going alone");
                        count(state, CacheKind::Inflight, "error");
                        return Ok(Joined::Alone);
                    }
                }
            }
        }
    }
    Ok(Joined::Alone)
}

/// Files the prompt's vector for the semantic cache (the worker adds the
/// answer), before the job is published.
pub(crate) async fn file(state: &AppState, accepted: &mut Accepted) {
    let Some(plan) = &accepted.cache else { return };
    let (Some(embedded), Some((_, scope)), true) = (&plan.embedded, &plan.semantic, plan.write)
    else {
        return;
    };
    let id = accepted.record.id;
    // The vector waits for its answer at most as long as the job is kept.
    let ttl = plan.ttl + Duration::from_secs(state.config.jobs.retention_s);
    match state
        .cache
        .file_vector(scope, id, &embedded.vector, &embedded.buckets, ttl)
        .await
    {
        Ok(()) => {
            if let Some(directive) = &mut accepted.message.cache {
                directive.semantic_scope = Some(scope.scope.clone());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot file a prompt vector"),
    }
}

/// After the publish of a leading job: its claim goes live (confirmed) or
/// is dropped (not confirmed).
pub(crate) async fn settle(state: &AppState, entry: &EntryKey, id: JobId, confirmed: bool) {
    let result = if confirmed {
        let retention = Duration::from_secs(state.config.jobs.retention_s);
        state.cache.confirm(entry, id, retention).await.map(drop)
    } else {
        state.cache.abandon(entry, id).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, job = %id, "cannot settle an in-flight claim");
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ClearQuery {
    /// Only this model's entries (all models when left out).
    pub model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    /// Entries deleted (exact and semantic).
    pub deleted: u64,
}

/// Clear the caller's cached answers, all of them or one model's.
#[utoipa::path(delete, path = "/v1/cache", params(ClearQuery),
    responses((status = 200, body = Cleared), (status = 401, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn clear(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(query): Query<ClearQuery>,
) -> Result<Json<Cleared>, ApiError> {
    let deleted = state
        .cache
        .clear(&caller.tenant_id, query.model.as_deref())
        .await?;
    Ok(Json(Cleared { deleted }))
}
