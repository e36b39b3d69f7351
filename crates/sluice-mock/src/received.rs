//! The bodies the mock received on its model routes, newest last, so that
//! a test can check what reached the provider (the fields a caller sent,
//! passed through): `GET /mock/received`. Bounded: the last [`KEPT`]
//! requests, each cut at [`MAX_BODY`] bytes (a longer one is kept as its
//! length only), so that benchmarks' large batches cost no memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::Shared;

/// Most requests kept.
pub const KEPT: usize = 64;
/// Largest body kept whole.
pub const MAX_BODY: usize = 64 * 1024;

/// A request's path, its body's length, and the body if short enough.
type Kept = (String, usize, Option<Bytes>);

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    seen: Mutex<VecDeque<Kept>>,
}

/// One request as `GET /mock/received` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub path: String,
    /// The JSON body; null when it was not JSON or longer than `MAX_BODY`.
    pub body: Value,
    pub bytes: usize,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Kept>> {
        crate::tally::lock(&self.seen)
    }

    fn record(&self, path: &str, body: &Bytes) {
        let kept = (body.len() <= MAX_BODY).then(|| body.clone());
        let mut seen = self.lock();
        if seen.len() == KEPT {
            seen.pop_front();
        }
        seen.push_back((path.to_owned(), body.len(), kept));
    }

    pub(crate) fn snapshot(&self) -> Vec<Received> {
        self.lock()
            .iter()
            .map(|(path, bytes, body)| Received {
                path: path.clone(),
                body: body
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null),
                bytes: *bytes,
            })
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Keeps the request's body (a shared handle to its bytes, not a copy),
/// then serves it.
pub(crate) async fn record(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::routes::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::invalid("body", "the request body could not be read").into_response()
        }
    };
    shared.received().record(parts.uri.path(), &bytes);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
