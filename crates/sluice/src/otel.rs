//! OpenTelemetry export (the `otel` feature): the spans go out over OTLP
//! (HTTP, protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT`, batched, from a
//! background thread. Without that variable nothing is exported.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Flushes the exporter when dropped (at the end of `main`).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("opentelemetry: {e}");
            }
        }
    }
}

/// The export layer, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the service
/// is `OTEL_SERVICE_NAME`, else `sluice-<role>`.
pub fn layer<S>(role: &str) -> (Option<impl Layer<S>>, Guard)
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return (None, Guard(None));
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("opentelemetry: cannot build the OTLP exporter, not exporting: {e}");
            return (None, Guard(None));
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| format!("sluice-{role}"));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("sluice");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    (Some(layer), Guard(Some(provider)))
}
