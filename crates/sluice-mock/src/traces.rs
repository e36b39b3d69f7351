//! The W3C `traceparent` headers the mock received on its model routes,
//! newest last, so that a test can check that a trace reached the
//! provider: `GET /mock/traces`. Bounded: the oldest are dropped.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use crate::state::Shared;

/// Most headers kept.
pub const KEPT: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct TraceLog {
    seen: Mutex<VecDeque<String>>,
}

/// What `GET /mock/traces` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Traces {
    /// Every `traceparent` received (up to the last 10 000), oldest first.
    pub traceparents: Vec<String>,
    /// Model requests that came without one.
    pub without: u64,
}

impl TraceLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        crate::tally::lock(&self.seen)
    }

    pub(crate) fn record(&self, traceparent: Option<&str>) {
        let mut seen = self.lock();
        if seen.len() == KEPT {
            seen.pop_front();
        }
        // An absent header is kept as an empty entry, so counts add up.
        seen.push_back(traceparent.unwrap_or_default().to_owned());
    }

    pub(crate) fn snapshot(&self) -> Traces {
        let seen = self.lock();
        Traces {
            traceparents: seen.iter().filter(|t| !t.is_empty()).cloned().collect(),
            without: seen.iter().filter(|t| t.is_empty()).count() as u64,
        }
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Records the request's `traceparent`, then serves it.
pub(crate) async fn record(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    shared.traces().record(traceparent);
    next.run(request).await
}
