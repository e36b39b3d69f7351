//! A job's trace in the worker: read from the delivery's `traceparent`
//! header (else the message's trace id), carried by the job's span (so
//! every log line about it has `job_id` and `trace_id`), and passed on to
//! the provider call as the next hop.

use sluice_core::trace::{TraceParent, HEADER};
use sluice_core::JobMessage;
use sluice_queue::Delivery;

/// The trace the job came with: the API's span is its parent.
pub fn of(message: &JobMessage, delivery: &Delivery) -> TraceParent {
    delivery
        .headers
        .get(HEADER)
        .and_then(|v| TraceParent::parse(v))
        .filter(|tp| tp.trace_id == message.trace_id || message.trace_id.is_empty())
        .unwrap_or_else(|| TraceParent::in_trace(&message.trace_id))
}

/// The span every step of the job runs in (made once per job, in
/// `Pending::new`).
pub fn job_span(m: &JobMessage, trace: &TraceParent) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        job_id = %m.id,
        trace_id = %trace.trace_id,
        tenant_id = %m.tenant_id,
        model = %m.model,
    );
    #[cfg(feature = "otel")]
    {
        // The exported span's parent is the API's span of the submission.
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(trace.otel_context());
    }
    span
}

/// The `traceparent` for the provider call: the same trace, a new span.
pub fn outgoing(trace: &TraceParent) -> String {
    trace.child().to_string()
}
