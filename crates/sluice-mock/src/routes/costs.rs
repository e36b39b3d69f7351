//! `GET /v1/organization/costs`: what the mock billed, per UTC day and
//! model, in the shape of OpenAI's Costs API (buckets of one day, one
//! result per line item; here a line item is a model). It reads the mock's
//! own bill, every tier together (batch lines included, brought up to
//! date first), so it is the truth a reconciliation compares the ledger
//! with.
//! Amounts are dollars, as OpenAI gives them; a micro-dollar figure comes
//! back exactly from `value × 10⁶`, rounded.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::Shared;

pub(super) const PATH: &str = "/v1/organization/costs";

const DAY_S: u64 = 86_400;
/// Most days one request may ask for (OpenAI's limit for daily buckets).
const MAX_DAYS: u64 = 180;

/// Today, as days since the Unix epoch (UTC).
pub(crate) fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / DAY_S)
}

#[derive(Deserialize)]
pub(super) struct Params {
    /// Start, Unix seconds (inclusive; the day it falls in).
    start_time: Option<u64>,
    /// End, Unix seconds (exclusive); default: now.
    end_time: Option<u64>,
    /// Only `1d`.
    bucket_width: Option<String>,
    /// `line_item` or `project_id`; results are per line item either way.
    #[allow(dead_code)]
    group_by: Option<String>,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let start = params
        .start_time
        .ok_or_else(|| ApiError::invalid("start_time", "start_time is required"))?;
    if params.bucket_width.as_deref().is_some_and(|w| w != "1d") {
        return Err(ApiError::unsupported(
            "bucket_width",
            "the mock bills per day: bucket_width must be 1d",
        ));
    }
    let end = params.end_time.unwrap_or((today() + 1) * DAY_S);
    if end <= start {
        return Err(ApiError::invalid(
            "end_time",
            "end_time must be after start_time",
        ));
    }
    let (first, last) = (start / DAY_S, end.div_ceil(DAY_S));
    if last - first > MAX_DAYS {
        return Err(ApiError::invalid(
            "end_time",
            format!("at most {MAX_DAYS} daily buckets at once"),
        ));
    }
    shared.advance_batches();
    let daily = shared.daily().snapshot();
    let buckets: Vec<Value> = (first..last)
        .map(|day| {
            let results: Vec<Value> = daily
                .0
                .get(&day)
                .into_iter()
                .flatten()
                .map(|(model, micros)| {
                    json!({
                        "object": "organization.costs.result",
                        "amount": {"value": *micros as f64 / 1e6, "currency": "usd"},
                        "line_item": model,
                        "project_id": null,
                    })
                })
                .collect();
            json!({
                "object": "bucket",
                "start_time": day * DAY_S,
                "end_time": (day + 1) * DAY_S,
                "results": results,
            })
        })
        .collect();
    Ok(Json(json!({
        "object": "page",
        "data": buckets,
        "has_more": false,
        "next_page": null,
    })))
}
