//! The Prometheus metrics of every role, in one registry per process, so
//! that `sluice dev` (all roles in one process) serves them all at once.

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Jobs accepted by the API (confirmed by the broker), by priority.
    pub jobs_submitted: IntCounterVec,
    /// Jobs that reached a terminal status, by status.
    pub jobs_finished: IntCounterVec,
    /// Jobs per flushed batch, by endpoint.
    pub batch_size: HistogramVec,
    /// Flushed batches, by reason (size, tokens, wait, shutdown).
    pub batch_flushes: IntCounterVec,
    /// Seconds from enqueue to the start of the provider call.
    pub queue_wait: HistogramVec,
    /// Seconds a provider call took, by provider, endpoint and outcome.
    pub provider_duration: HistogramVec,
    /// Jobs a worker holds unacked.
    pub inflight_jobs: IntGauge,
    /// Each provider's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub provider_breaker_state: IntGaugeVec,
    /// Seconds a call waited for its provider's fleet-wide budget.
    pub provider_budget_wait: HistogramVec,
    /// HTTP requests the API answered, by route and status.
    pub http_requests: HistogramVec,
    /// Cache lookups, by kind (exact, semantic, inflight) and outcome
    /// (hit, miss, error).
    pub cache_requests: IntCounterVec,
    /// Micro-dollars that cache hits (and joined in-flight requests) did
    /// not spend: what their answers cost when a provider made them.
    pub cache_saved_micros: IntCounter,
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    // Names and labels are constants of this file; they are valid.
    #[allow(clippy::expect_used)]
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram")
}

fn plain_counter(name: &str, help: &str) -> IntCounter {
    #[allow(clippy::expect_used)]
    IntCounter::new(name, help).expect("valid counter")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    #[allow(clippy::expect_used)]
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

impl Metrics {
    pub fn new() -> Self {
        let seconds = || exponential_buckets(0.0005, 2.0, 18).unwrap_or_default();
        let m = Self {
            registry: Registry::new(),
            jobs_submitted: counter(
                "sluice_jobs_submitted_total",
                "Jobs accepted by the API and confirmed by the broker.",
                &["priority"],
            ),
            jobs_finished: counter(
                "sluice_jobs_finished_total",
                "Jobs that reached a terminal status.",
                &["status"],
            ),
            batch_size: histogram(
                "sluice_batch_size",
                "Jobs in each batch a worker sent to a provider.",
                &["endpoint"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            batch_flushes: counter(
                "sluice_batch_flushes_total",
                "Batches flushed, by what flushed them.",
                &["reason"],
            ),
            queue_wait: histogram(
                "sluice_queue_wait_seconds",
                "Seconds from a job's enqueue to the start of its provider call.",
                &["priority"],
                seconds(),
            ),
            provider_duration: histogram(
                "sluice_provider_request_duration_seconds",
                "Seconds each provider call took.",
                &["provider", "endpoint", "outcome"],
                seconds(),
            ),
            #[allow(clippy::expect_used)]
            inflight_jobs: IntGauge::new("sluice_inflight_jobs", "Jobs a worker holds unacked.")
                .expect("valid gauge"),
            #[allow(clippy::expect_used)]
            provider_breaker_state: IntGaugeVec::new(
                Opts::new(
                    "sluice_provider_breaker_state",
                    "Each provider's circuit breaker: 0 closed, 1 open, 2 half-open.",
                ),
                &["provider"],
            )
            .expect("valid gauge"),
            provider_budget_wait: histogram(
                "sluice_provider_budget_wait_seconds",
                "Seconds a provider call waited for the fleet-wide budget.",
                &["provider"],
                seconds(),
            ),
            http_requests: histogram(
                "sluice_http_request_duration_seconds",
                "Seconds the API took to answer, by route and status.",
                &["method", "route", "status"],
                seconds(),
            ),
            cache_requests: counter(
                "sluice_cache_requests_total",
                "Cache lookups, by kind (exact, semantic, inflight) and outcome (hit, miss, error).",
                &["kind", "outcome"],
            ),
            cache_saved_micros: plain_counter(
                "sluice_cache_saved_micros_total",
                "Micro-dollars cache hits did not spend (what the answers cost when made).",
            ),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 12] = [
            Box::new(m.cache_requests.clone()),
            Box::new(m.cache_saved_micros.clone()),
            Box::new(m.provider_budget_wait.clone()),
            Box::new(m.provider_breaker_state.clone()),
            Box::new(m.jobs_submitted.clone()),
            Box::new(m.jobs_finished.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.batch_flushes.clone()),
            Box::new(m.queue_wait.clone()),
            Box::new(m.provider_duration.clone()),
            Box::new(m.inflight_jobs.clone()),
            Box::new(m.http_requests.clone()),
        ];
        for c in collectors {
            // Each name is registered once, in this fresh registry.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The registry, for roles that add metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_required_metric() {
        let m = Metrics::new();
        m.jobs_submitted.with_label_values(&["standard"]).inc();
        m.jobs_finished.with_label_values(&["succeeded"]).inc();
        m.batch_size
            .with_label_values(&["/v1/completions"])
            .observe(3.0);
        m.queue_wait.with_label_values(&["standard"]).observe(0.1);
        m.provider_duration
            .with_label_values(&["p", "e", "ok"])
            .observe(0.1);
        let text = m.render();
        for name in [
            "sluice_jobs_submitted_total",
            "sluice_jobs_finished_total",
            "sluice_batch_size",
            "sluice_queue_wait_seconds",
            "sluice_provider_request_duration_seconds",
            "sluice_inflight_jobs",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
