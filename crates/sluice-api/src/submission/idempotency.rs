//! Stage 2, idempotency: a job submitted with an `Idempotency-Key` claims
//! the key (per tenant, for 24 h) for its job. A repeat of the same request
//! answers with the job the first one made, and submits nothing.
//!
//! Refuses: 422 (`idempotency-key-reused`) for a different request with
//! the same key; 409 (`idempotency-in-progress`) while the first request
//! is still being accepted. Writes: the key's claim
//! (`P:idem:{tenant}:KEY`), released again when the job is not accepted,
//! so that the client's retry can use the key.

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
    let claim = state
        .store
        .claim_idempotency(&caller.tenant_id, &key.0, fingerprint, job, IDEMPOTENCY_TTL)
        .await?;
    let IdempotencyClaim::Held {
        job,
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
    match own_job(state, &caller.tenant_id, job).await {
        Ok(record) => Ok(Some(record)),
        Err(ApiError::JobNotFound(_)) => Err(ApiError::IdempotencyInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly".into(),
        )),
        Err(e) => Err(e),
    }
}

/// Frees `key` after its job was not accepted.
pub(super) async fn release(state: &AppState, caller: &Principal, key: &IdempotencyKey) {
    if let Err(e) = state
        .store
        .release_idempotency(&caller.tenant_id, &key.0)
        .await
    {
        tracing::warn!(error = %e, "cannot release an idempotency key");
    }
}
