//! `DELETE /v1/cache`: a tenant clears its cached answers.
//! `GET /v1/cache/semantic/samples`: the tenant's latest served semantic
//! hits, for review.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sluice_core::cache::SemanticSample;
use sluice_store::cache::SAMPLES_KEPT;

use crate::extract::Caller;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SamplesQuery {
    /// At most this many samples, newest first (1 to 200; 50 when left
    /// out).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Samples {
    /// Always `list`.
    pub object: &'static str,
    /// Served semantic hits, newest first.
    pub data: Vec<SemanticSample>,
}

/// The caller's latest served semantic hits, with their similarity and
/// the two questions, for review (the last 200 are kept).
#[utoipa::path(get, path = "/v1/cache/semantic/samples", params(SamplesQuery),
    responses((status = 200, body = Samples), (status = 401, body = Problem),
              (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn samples(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<SamplesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Samples>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > SAMPLES_KEPT {
        return Err(ApiError::InvalidRequest(format!(
            "`limit` must be between 1 and {SAMPLES_KEPT} (got {limit})"
        )));
    }
    let data = state.cache.samples(&caller.tenant_id, limit).await?;
    Ok(Json(Samples {
        object: "list",
        data,
    }))
}
