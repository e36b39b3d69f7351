//! What a tenant spent: `GET /v1/usage` (usage and cost, grouped) and
//! `GET /v1/budget` (this month's spend against its cap).

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sluice_store::usage::{GroupBy, UsageLine, UsageQuery};
use utoipa::{IntoParams, ToSchema};

use crate::extract::Caller;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::submission::budget::this_month;

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageParams {
    /// Start (inclusive): RFC 3339 or YYYY-MM-DD (UTC). Default: the start of this month.
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or YYYY-MM-DD (UTC). Default: now.
    pub to: Option<String>,
    /// Comma-separated: model, feature, route, day, provider, tier.
    pub group_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub object: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<UsageLine>,
    #[schema(value_type = Object)]
    pub total: UsageLine,
}

/// A time given as RFC 3339 or as a date (midnight UTC).
pub fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
        .ok_or_else(|| format!("`{what}` must be RFC 3339 or YYYY-MM-DD (got {text:?})"))
}

/// The first instant of `now`'s month.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
        .unwrap_or(now)
}

/// The sum of every line.
pub fn total(lines: &[UsageLine]) -> UsageLine {
    let mut t = UsageLine::default();
    for l in lines {
        t.merge(l);
    }
    t
}

/// The calling tenant's usage between `from` and `to`, grouped.
#[utoipa::path(get, path = "/v1/usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    Caller(caller): Caller,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let now = Utc::now();
    let from = match &params.from {
        Some(f) => parse_time(f, "from").map_err(ApiError::InvalidRequest)?,
        None => month_start(now),
    };
    let to = match &params.to {
        Some(t) => parse_time(t, "to").map_err(ApiError::InvalidRequest)?,
        None => now,
    };
    if from >= to {
        return Err(ApiError::InvalidRequest(format!(
            "`from` ({from}) must be before `to` ({to})"
        )));
    }
    let group_by = GroupBy::parse_list(params.group_by.as_deref().unwrap_or(""))
        .map_err(ApiError::InvalidRequest)?;
    if group_by.contains(&GroupBy::Tenant) {
        return Err(ApiError::InvalidRequest(
            "cannot group by tenant: a report covers the calling tenant only".into(),
        ));
    }
    let query = UsageQuery {
        tenant_id: Some(caller.tenant_id.clone()),
        from,
        to,
        group_by: group_by.clone(),
    };
    let data = state.usage.report(&query).await?;
    Ok(Json(UsageReport {
        object: "usage",
        from,
        to,
        group_by: group_by.iter().map(|g| g.as_str().to_owned()).collect(),
        total: total(&data),
        data,
    }))
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
pub async fn budget(
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
