//! The webhooks role's metrics: declared with every other metric in
//! `sluice_core::metrics` (so the catalog lists them), handed out here.

use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use sluice_core::metrics::Metrics;

#[derive(Clone)]
pub struct WebhookMetrics {
    /// Attempts, by outcome: `succeeded`, `failed` (will retry),
    /// `exhausted` (the last one failed), `gone` (410), `disabled`.
    pub attempts: IntCounterVec,
    /// Deliveries whose every attempt failed.
    pub exhausted: IntCounter,
    /// Seconds each attempt took, by outcome.
    pub attempt_duration: HistogramVec,
}

impl WebhookMetrics {
    /// The process's webhook metrics.
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            attempts: metrics.webhook_attempts.clone(),
            exhausted: metrics.webhook_exhausted.clone(),
            attempt_duration: metrics.webhook_attempt_duration.clone(),
        }
    }
}
