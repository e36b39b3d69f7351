//! Stage 2, idempotency: a job submitted with an `Idempotency-Key` claims
//! the key (per tenant, for 24 h) for its job. A repeat of the same request
//! answers with the job the first one made, and submits nothing.
//!
//! Refuses: 422 (`idempotency-key-reused`) for a different request with
//! the same key; 409 (`idempotency-in-progress`) while the first request
//! is still being accepted. Writes: the key's claim
//! (`P:idem:{tenant}:KEY`), released again when the job is not accepted,
//! so that the client's retry can use the key. A claim whose request died
//! before it stored its job (its API was killed, or the request timed out)
//! is taken over once it is older than any request can last.

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::Value;
use sluice_core::{JobId, JobRecord};
use sluice_store::jobs::IdempotencyClaim;
use sluice_store::tenants::Principal;

use crate::problem::ApiError;
use crate::read::own_job;
use crate::state::AppState;

/// How long an `Idempotency-Key` keeps answering with its job.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(86_400);

/// A valid `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The request's key, if it sent one; a malformed one is a 422.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = value.to_str().unwrap_or_default().trim();
        if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ApiError::InvalidRequest(
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        Ok(Some(Self(key.to_owned())))
    }
}

/// What identifies "the same request" under one key: its envelope's hash.
pub(super) fn fingerprint(envelope: &Value) -> String {
    sluice_core::batching::short_hash(envelope.to_string().as_bytes())
}

/// Claims `key` for `job`: `None` when it is this request's now, or the
/// job an earlier identical request made with it.
pub(super) async fn claim(
    state: &AppState,
    caller: &Principal,
    key: &IdempotencyKey,
    fingerprint: &str,
    job: JobId,
) -> Result<Option<JobRecord>, ApiError> {
    let tenant = &caller.tenant_id;
    // Twice at most: a second try only after a dead request's claim was
    // given back.
    for _ in 0..2 {
        let claim = state
            .store
            .claim_idempotency(tenant, &key.0, fingerprint, job, IDEMPOTENCY_TTL)
            .await?;
        let IdempotencyClaim::Held {
            job: holder,
            fingerprint: held,
        } = claim
        else {
            return Ok(None);
        };
        if held != fingerprint {
            return Err(ApiError::IdempotencyKeyReused(
                "this Idempotency-Key was used for a different request; use a new key".into(),
            ));
        }
        match own_job(state, tenant, holder).await {
            Ok(record) => return Ok(Some(record)),
            Err(ApiError::JobNotFound(_)) if outlived_its_request(state, holder) => {
                // Compare-and-delete: only this dead claim is given back.
                state
                    .store
                    .release_idempotency(tenant, &key.0, holder)
                    .await?;
            }
            Err(ApiError::JobNotFound(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::IdempotencyInProgress(
        "a request with this Idempotency-Key is still being processed; retry shortly".into(),
    ))
}

/// Whether the request that made `job` has ended for certain: its claim
/// is older than any request may last (twice the request timeout), so a
/// job still not stored will never be.
fn outlived_its_request(state: &AppState, job: JobId) -> bool {
    let timeout = state.config.api.request_timeout_s.saturating_mul(2);
    let age = chrono::Utc::now() - job.created_at();
    age.num_seconds() >= i64::try_from(timeout).unwrap_or(i64::MAX)
}

/// Frees `key` after `job` was not accepted.
pub(super) async fn release(
    state: &AppState,
    caller: &Principal,
    key: &IdempotencyKey,
    job: JobId,
) {
    if let Err(e) = state
        .store
        .release_idempotency(&caller.tenant_id, &key.0, job)
        .await
    {
        tracing::warn!(error = %e, "cannot release an idempotency key");
    }
}
