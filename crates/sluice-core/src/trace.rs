//! W3C Trace Context (`traceparent`): the trace id a job carries from the
//! API through the AMQP headers to the worker and the provider call.
//!
//! `traceparent: 00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags>`.
//! Each hop keeps the trace id and names its own span as the parent of the
//! next one.

use std::fmt;

/// The header's name, on HTTP requests and responses and AMQP messages.
pub const HEADER: &str = "traceparent";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the sender's span.
    pub span_id: String,
    /// The sampled flag.
    pub sampled: bool,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    // All-zero ids are invalid; 2^-64 odds, but cheap to rule out.
    while buf.iter().all(|b| *b == 0) {
        rand::thread_rng().fill_bytes(&mut buf);
    }
    hex::encode(buf)
}

impl TraceParent {
    /// Parses a header value; `None` if it is not a valid version-00 (or
    /// later, read as 00) `traceparent`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version_ok = version.len() == 2
            && version != "ff"
            && version.bytes().all(|b| b.is_ascii_hexdigit())
            && (version != "00" || parts.next().is_none());
        if !version_ok || !is_hex(trace_id, 32) || !is_hex(span_id, 16) {
            return None;
        }
        if flags.len() != 2 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, sampled.
    pub fn root() -> Self {
        Self {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            sampled: true,
        }
    }

    /// A new span in `trace_id` (a trace id without its parent span, as a
    /// job message carries it); a new trace if `trace_id` is not valid.
    pub fn in_trace(trace_id: &str) -> Self {
        if is_hex(trace_id, 32) {
            Self {
                trace_id: trace_id.to_owned(),
                span_id: random_hex(8),
                sampled: true,
            }
        } else {
            Self::root()
        }
    }

    /// The next hop: the same trace, a new span.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
            sampled: self.sampled,
        }
    }
}

#[cfg(feature = "otel")]
impl TraceParent {
    /// The remote parent context this `traceparent` names, for
    /// `tracing_opentelemetry::OpenTelemetrySpanExt::set_parent`.
    pub fn otel_context(&self) -> opentelemetry::Context {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let context = SpanContext::new(
            TraceId::from_hex(&self.trace_id).unwrap_or(TraceId::INVALID),
            SpanId::from_hex(&self.span_id).unwrap_or(SpanId::INVALID),
            flags,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(context)
    }

    /// The ids an exported span got (its trace id and its own span id), or
    /// `self` when the span is not exported.
    pub fn with_otel_span(&self, context: &opentelemetry::Context) -> Self {
        use opentelemetry::trace::TraceContextExt;
        let span = context.span();
        let ids = span.span_context();
        if ids.is_valid() {
            Self {
                trace_id: ids.trace_id().to_string(),
                span_id: ids.span_id().to_string(),
                sampled: ids.is_sampled(),
            }
        } else {
            self.clone()
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = u8::from(self.sampled);
        write!(f, "00-{}-{}-{flags:02x}", self.trace_id, self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_spec_example() {
        let tp = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id, "00f067aa0ba902b7");
        assert!(tp.sampled);
        assert_eq!(tp.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may append fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert!(!TraceParent::parse(later).unwrap().sampled);
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let root = TraceParent::root();
        assert!(TraceParent::parse(&root.to_string()).is_some());
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(
            TraceParent::in_trace(&root.trace_id).trace_id,
            root.trace_id
        );
        assert_ne!(TraceParent::in_trace("not a trace").trace_id, "not a trace");
    }
}
