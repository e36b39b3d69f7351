//! W3C `traceparent` in and out: each request joins the caller's trace (or
//! starts one), runs in a span carrying its trace id, and answers with a
//! `traceparent` naming the API's span. Job submissions carry the same
//! trace to the worker in the AMQP headers (see `submission::validate`).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use sluice_core::trace::{TraceParent, HEADER};
use tracing::Instrument;

tokio::task_local! {
    /// The API's span of the request being served.
    static CURRENT: TraceParent;
}

/// The trace id a request's jobs belong to: the caller's `traceparent`'s,
/// else a new one.
pub fn trace_id(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|t| t.len() == 32)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// The request's span context, inside a request.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Joins or starts the trace; the handlers see the API's own span as the
/// request's `traceparent` header, and so does the caller in the answer.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let theirs = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let ours = theirs
        .as_ref()
        .map_or_else(TraceParent::root, TraceParent::child);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    #[cfg(feature = "otel")]
    let ours = {
        // The exported span joins the caller's trace; the answer names it.
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if let Some(theirs) = &theirs {
            let _ = span.set_parent(theirs.otel_context());
        }
        ours.with_otel_span(&span.context())
    };
    span.record("trace_id", tracing::field::display(&ours.trace_id));
    let header = HeaderValue::from_str(&ours.to_string()).ok();
    if let Some(value) = &header {
        request.headers_mut().insert(HEADER, value.clone());
    }
    let mut response = CURRENT
        .scope(ours, next.run(request).instrument(span))
        .await;
    if let Some(value) = header {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
