//! The mock over HTTP: through the router in-process, and once through a
//! real listener.

// Clippy's `allow-unwrap-in-tests` covers `#[test]` functions only, not the
// helpers they share; in a test binary a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod batches;
mod bill;
mod chat;
mod completions;
mod embeddings;
mod errors;
mod faults;
mod flex;
mod latency;
mod message_batches;
mod messages;
mod messages_stream;
mod prefix_cache;
mod rate_limits;
mod serve;
mod stats;
mod stream;
