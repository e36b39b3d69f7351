//! The API's own tests: every route and every problem type, through the
//! router in-process, over the in-memory twins (no services needed).

// Clippy's `allow-unwrap-in-tests` covers `#[test]` functions only, not the
// helpers they share; in a test binary a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod batch;
mod batch_api;
mod budget;
mod cache;
mod compat;
mod errors;
mod files;
mod idempotency;
mod jobs;
mod judge;
mod limits;
mod ops;
mod outages;
mod semantic;
mod share;
mod streaming;
mod tiers;
mod usage;
mod webhooks;
