//! Monthly spend caps: a tenant at or past its cap is refused new jobs
//! with 402, and `GET /v1/budget` shows what it has spent this month.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use chrono::{Datelike, NaiveDate, Utc};
use serde::Serialize;
use sluice_store::tenants::Principal;
use utoipa::ToSchema;

use crate::extract::Caller;
use crate::problem::{ApiError, Problem};
use crate::AppState;

/// How long a tenant's spend is trusted before it is read again: a tenant
/// can overshoot its cap by at most what its jobs cost in this window.
pub const SPEND_CACHE_TTL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct SpendCache {
    entries: Mutex<HashMap<String, (u64, Instant)>>,
}

fn this_month() -> NaiveDate {
    let now = Utc::now();
    NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_else(|| now.date_naive())
}

/// Whose spend: a tenant's, or one key's.
enum Spender<'a> {
    Tenant(&'a str),
    Key(&'a str),
}

async fn spent(state: &AppState, who: Spender<'_>) -> Result<u64, ApiError> {
    let cache_key = match who {
        Spender::Tenant(id) => format!("tenant:{id}"),
        Spender::Key(id) => format!("key:{id}"),
    };
    if let Some(&(spent, at)) = state
        .spend
        .entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cache_key)
    {
        if at.elapsed() < SPEND_CACHE_TTL {
            return Ok(spent);
        }
    }
    let spent = match who {
        Spender::Tenant(id) => state.usage.spend(id, this_month()).await?,
        Spender::Key(id) => state.usage.key_spend(id, this_month()).await?,
    };
    state
        .spend
        .entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cache_key, (spent, Instant::now()));
    Ok(spent)
}

/// Refuses a submission from a tenant (or a key) at or past its monthly cap.
pub async fn check(state: &AppState, caller: &Principal) -> Result<(), ApiError> {
    if let Some(cap) = caller.key_monthly_budget_micros {
        let spent = spent(state, Spender::Key(&caller.key_id)).await?;
        if spent >= cap {
            return Err(ApiError::BudgetExhausted(format!(
                "this API key has spent {spent} of its monthly budget of {cap} micro-dollars for {}",
                this_month().format("%Y-%m"),
            )));
        }
    }
    let Some(cap) = caller.monthly_budget_micros else {
        return Ok(());
    };
    let spent = spent(state, Spender::Tenant(&caller.tenant_id)).await?;
    state.metrics.record_budget(&caller.tenant_id, spent, cap);
    if spent >= cap {
        return Err(ApiError::BudgetExhausted(format!(
            "tenant {:?} has spent {spent} of its monthly budget of {cap} micro-dollars for {}; \
             no new jobs until the budget is raised or the month ends",
            caller.tenant_name,
            this_month().format("%Y-%m"),
        )));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    pub object: &'static str,
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    pub spent_micros: u64,
    /// The monthly cap, or null for none.
    pub budget_micros: Option<u64>,
    pub remaining_micros: Option<u64>,
}

/// What the calling tenant spent this month, and its cap.
#[utoipa::path(get, path = "/v1/budget",
    responses((status = 200, body = BudgetView), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<BudgetView>, ApiError> {
    let spent = state.usage.spend(&caller.tenant_id, this_month()).await?;
    Ok(Json(BudgetView {
        object: "budget",
        month: this_month().format("%Y-%m").to_string(),
        spent_micros: spent,
        budget_micros: caller.monthly_budget_micros,
        remaining_micros: caller
            .monthly_budget_micros
            .map(|cap| cap.saturating_sub(spent)),
    }))
}
