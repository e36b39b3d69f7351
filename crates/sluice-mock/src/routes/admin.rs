//! The mock's own control endpoints: `GET /mock/stats`, `GET /mock/bill`,
//! `GET /mock/traces`, `POST /mock/reset`, `POST /mock/admin/down` and `POST /mock/admin/up`.
//! They are not counted in the stats nor billed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::bill::MockBill;
use crate::state::Shared;
use crate::stats::MockStats;

pub(super) const STATS_PATH: &str = "/mock/stats";
pub(super) const RESET_PATH: &str = "/mock/reset";
pub(super) const BILL_PATH: &str = "/mock/bill";
pub(super) const DOWN_PATH: &str = "/mock/admin/down";
pub(super) const UP_PATH: &str = "/mock/admin/up";
pub(super) const TRACES_PATH: &str = "/mock/traces";
pub(super) const RECEIVED_PATH: &str = "/mock/received";

pub(super) async fn stats(State(shared): State<Shared>) -> Json<MockStats> {
    Json(shared.stats_snapshot())
}

pub(super) async fn traces(State(shared): State<Shared>) -> Json<crate::traces::Traces> {
    Json(shared.traces().snapshot())
}

pub(super) async fn received(State(shared): State<Shared>) -> Json<Vec<crate::received::Received>> {
    Json(shared.received().snapshot())
}

pub(super) async fn bill(State(shared): State<Shared>) -> Json<MockBill> {
    Json(shared.bill_snapshot())
}

/// Zeroes the counters and the bill, empties the prefix cache and the
/// rate-limit windows, forgets the files and batches, and restarts request
/// numbering.
pub(super) async fn reset(State(shared): State<Shared>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

pub(super) async fn down(State(shared): State<Shared>) -> StatusCode {
    shared.set_down(true);
    StatusCode::NO_CONTENT
}

pub(super) async fn up(State(shared): State<Shared>) -> StatusCode {
    shared.set_down(false);
    StatusCode::NO_CONTENT
}
