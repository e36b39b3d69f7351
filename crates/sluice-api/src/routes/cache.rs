//! `DELETE /v1/cache`: a tenant clears its cached answers.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
