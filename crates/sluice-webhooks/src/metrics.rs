//! The webhooks role's metrics, in the process's registry.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
};
use sluice_core::metrics::Metrics;

#[derive(Clone)]
pub struct WebhookMetrics {
    /// Attempts, by outcome: `succeeded`, `failed` (will retry),
    /// `exhausted` (the last one failed), `gone` (410), `refused` (address).
    pub attempts: IntCounterVec,
    /// Deliveries whose every attempt failed.
    pub exhausted: IntCounter,
    /// Seconds each attempt took, by outcome.
    pub attempt_duration: HistogramVec,
}

impl WebhookMetrics {
    /// Registers the metrics in `metrics`' registry (once per process).
    #[allow(clippy::expect_used)] // constant, valid names
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            attempts: IntCounterVec::new(
                Opts::new(
                    "sluice_webhook_deliveries_total",
                    "Webhook delivery attempts, by outcome.",
                ),
                &["outcome"],
            )
            .expect("valid counter"),
            exhausted: IntCounter::new(
                "sluice_webhook_exhausted_total",
                "Webhook deliveries that failed every attempt of the schedule.",
            )
            .expect("valid counter"),
            attempt_duration: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_webhook_attempt_duration_seconds",
                    "Seconds each webhook attempt took.",
                )
                .buckets(exponential_buckets(0.001, 2.0, 16).unwrap_or_default()),
                &["outcome"],
            )
            .expect("valid histogram"),
        };
        let registry = metrics.registry();
        let _ = registry.register(Box::new(m.attempts.clone()));
        let _ = registry.register(Box::new(m.exhausted.clone()));
        let _ = registry.register(Box::new(m.attempt_duration.clone()));
        m
    }
}
