//! The mock's own control endpoints: `GET /mock/stats` and
//! `POST /mock/reset`. They are not counted in the stats.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::state::Shared;
use crate::stats::MockStats;

pub(super) const STATS_PATH: &str = "/mock/stats";
pub(super) const RESET_PATH: &str = "/mock/reset";

pub(super) async fn stats(State(shared): State<Shared>) -> Json<MockStats> {
    Json(shared.stats().snapshot())
}

pub(super) async fn reset(State(shared): State<Shared>) -> StatusCode {
    shared.stats().reset();
    StatusCode::NO_CONTENT
}
