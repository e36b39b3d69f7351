//! Stage 5, budget: a tenant, or a key, at or past its monthly spending cap
//! is refused new jobs.
//!
//! Refuses: 402 (`budget-exhausted`); 503 when the spend cannot be read.
//! Writes nothing.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, Utc};
use sluice_store::tenants::Principal;
use sluice_store::StoreError;

use crate::caches::Spender;
use crate::problem::ApiError;
use crate::state::AppState;

/// The first day of this month (UTC), the period budgets count.
pub fn this_month() -> NaiveDate {
    let now = Utc::now();
    NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_else(|| now.date_naive())
}

async fn spent(state: &AppState, who: Spender) -> Result<u64, ApiError> {
    let read = async {
        match &who {
            Spender::Tenant(id) => state.usage.spend(id, this_month()).await,
            Spender::Key(id) => state.usage.key_spend(id, this_month()).await,
        }
    };
    state
        .spend
        .0
        .try_get_with(who.clone(), read)
        .await
        .map_err(|e: Arc<StoreError>| ApiError::StoreUnavailable(e.to_string()))
}

/// Refuses a submission from a tenant (or a key) at or past its monthly cap.
pub async fn check(state: &AppState, caller: &Principal) -> Result<(), ApiError> {
    if let Some(cap) = caller.key_monthly_budget_micros {
        let spent = spent(state, Spender::Key(caller.key_id.clone())).await?;
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
    let spent = spent(state, Spender::Tenant(caller.tenant_id.clone())).await?;
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
