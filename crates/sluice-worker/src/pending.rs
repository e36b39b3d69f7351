//! A job the worker holds, from the consumer that took it off the queue to
//! the executor that settles its delivery.

use sluice_core::trace::TraceParent;
use sluice_core::JobMessage;
use sluice_queue::Delivery;

/// A job the worker holds: its message, the delivery to settle, and its
/// trace and span (read and made once).
pub struct Pending {
    pub message: JobMessage,
    pub delivery: Delivery,
    pub trace: TraceParent,
    pub span: tracing::Span,
}

impl Pending {
    pub fn new(message: JobMessage, delivery: Delivery) -> Self {
        let trace = crate::trace::of(&message, &delivery);
        let span = crate::trace::job_span(&message, &trace);
        Self {
            message,
            delivery,
            trace,
            span,
        }
    }
}
