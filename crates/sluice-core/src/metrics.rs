//! The Prometheus metrics of every role, in one registry per process, so
//! that `sluice dev` (all roles in one process) serves them all at once.
//!
//! Every metric is declared here, through a [`catalog::Builder`] that
//! registers it and records its name, type, labels and help text; the
//! catalog in `docs/metrics.md` is that record, and a unit test fails when
//! the two differ (`SLUICE_BLESS=1` rewrites the file).

pub mod catalog;

use prometheus::{
    exponential_buckets, Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

use crate::job::Usage;
pub use catalog::{Entry, Kind};

/// How much the metrics may say about tenants.
#[derive(Clone, Copy, Debug)]
pub struct MetricsOptions {
    /// Label tokens, cost and budget metrics by tenant. Off, every tenant
    /// counts under one series (an empty `tenant` label, which Prometheus
    /// drops), bounding the series to the models served.
    pub tenant_label: bool,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self { tenant_label: true }
    }
}

pub struct Metrics {
    registry: Registry,
    catalog: Vec<Entry>,
    options: MetricsOptions,
    // --- api ---
    /// Jobs accepted by the API (confirmed by the broker), by priority.
    pub jobs_submitted: IntCounterVec,
    /// HTTP requests the API answered, by route and status.
    pub http_requests: HistogramVec,
    /// Publisher confirms the API received, by outcome.
    pub publish_confirms: IntCounterVec,
    /// Each capped tenant's spend this month over its cap.
    pub tenant_budget_used: prometheus::GaugeVec,
    /// Batch API lines made into jobs.
    pub batch_lines_made: IntCounter,
    /// Batch API batches that ended, by status.
    pub batches_ended: IntCounterVec,
    // --- queue ---
    /// Messages ready in each queue, as the broker counts them.
    pub queue_depth: IntGaugeVec,
    /// Seconds from enqueue to the start of the provider call.
    pub queue_wait: HistogramVec,
    // --- worker ---
    /// Jobs that reached a terminal status, by status.
    pub jobs_finished: IntCounterVec,
    /// Jobs answered, by the tier that answered them.
    pub jobs_answered: IntCounterVec,
    /// Seconds from a job's acceptance to its end by a worker.
    pub job_duration: HistogramVec,
    /// Jobs a worker holds unacked.
    pub inflight_jobs: IntGauge,
    /// Jobs a worker's fair gate holds, waiting for their turn, by priority.
    pub fair_held_jobs: IntGaugeVec,
    /// Calls' worth of jobs a worker's fair gate lets wait for a provider at once, now.
    pub fair_window_calls: IntGauge,
    /// Jobs per flushed batch, by endpoint.
    pub batch_size: HistogramVec,
    /// Flushed batches, by reason (size, tokens, wait, idle, shutdown).
    pub batch_flushes: IntCounterVec,
    /// Seconds a batch stayed open, from its first job to its flush.
    pub batch_wait: HistogramVec,
    // --- providers ---
    /// Seconds a provider call took, by provider, endpoint and outcome.
    pub provider_duration: HistogramVec,
    /// Failed provider calls, by provider, endpoint and kind.
    pub provider_errors: IntCounterVec,
    /// Each provider's circuit breaker: 0 closed, 1 open, 2 half-open.
    pub provider_breaker_state: IntGaugeVec,
    /// Calls to each provider a process lets be in flight at once: its
    /// `max_concurrency`, or the limit found against `latency_target_ms`.
    pub provider_concurrency_limit: IntGaugeVec,
    /// Seconds a call waited for its provider's fleet-wide budget.
    pub provider_budget_wait: HistogramVec,
    /// Provider calls billed beyond each job's own, by provider and
    /// reason: `orphaned` (its worker died during the call) or
    /// `superseded` (answered after another delivery had ended the job).
    pub provider_calls_repeated: IntCounterVec,
    /// Flex calls whose jobs went on to a standard call, by provider and
    /// reason (`unavailable`: the provider refused flex; `failed`: an
    /// error or no answer within the time the deadline left).
    pub flex_fallbacks: IntCounterVec,
    /// Provider batches not done, by provider and state (collecting,
    /// submitting, submitted), as the fleet's record holds them.
    pub provider_batches: IntGaugeVec,
    /// Seconds from a provider batch's submission to its end at the
    /// provider, by provider and the remote state it ended in.
    pub provider_batch_turnaround: HistogramVec,
    /// Jobs of provider batches sent back to the queue for real time, by
    /// provider and reason: `hedge` (the batch was not done in time),
    /// `refused` (the provider refused the batch) or `line` (a line came
    /// back worth another try, or never ran).
    pub provider_batch_reroutes: IntCounterVec,
    // --- usage ---
    /// Tokens of finished jobs, by model, tenant and kind.
    pub tokens: IntCounterVec,
    /// What finished jobs cost, in micro-dollars, by model and tenant.
    pub cost_micros: IntCounterVec,
    // --- cache ---
    /// Cache lookups, by kind (exact, semantic, inflight) and outcome
    /// (hit, miss, error).
    pub cache_requests: IntCounterVec,
    /// Micro-dollars that cache hits (and joined in-flight requests) did
    /// not spend: what their answers cost when a provider made them.
    pub cache_saved_micros: IntCounter,
    /// Semantic neighbours the verifier did not serve, by reason.
    pub semantic_refusals: IntCounterVec,
    /// Seconds a semantic lookup took until its verdict (the question
    /// embedded, the neighbours read, the verifier's calls), by outcome.
    pub semantic_lookup: HistogramVec,
    /// The wrong answers expected among served semantic hits (each hit
    /// adds its setting's calibrated error), in millionths of a hit.
    pub semantic_expected_wrong_micros: IntCounter,
    /// That expectation over the semantic hits served since start.
    pub semantic_error_estimate: prometheus::GaugeVec,
    // --- webhooks ---
    /// Webhook attempts, by outcome: `succeeded`, `failed` (will retry),
    /// `exhausted` (the last one failed), `gone` (410), `disabled`.
    pub webhook_attempts: IntCounterVec,
    /// Webhook deliveries whose every attempt failed.
    pub webhook_exhausted: IntCounter,
    /// Seconds each webhook attempt took, by outcome.
    pub webhook_attempt_duration: HistogramVec,
    // --- backlog (autoscaling and queue age) ---
    /// Jobs ready in each job queue: the ready messages times the jobs per
    /// message the worker's consumers saw lately (packs hold several).
    pub queue_ready_jobs: IntGaugeVec,
    /// When the job a worker last took from each job queue was accepted.
    pub queue_taken_enqueued: prometheus::GaugeVec,
}

/// A semantic lookup's buckets: 5 ms steps to 50 ms (its target), then
/// coarser to 5 s.
fn lookup_seconds() -> Vec<f64> {
    let fine = (1..=10).map(|i| f64::from(i) * 0.005);
    fine.chain([0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0])
        .collect()
}

fn seconds() -> Vec<f64> {
    // 0.5 ms to about 65 s.
    exponential_buckets(0.0005, 2.0, 18).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_options(MetricsOptions::default())
    }

    pub fn with_options(options: MetricsOptions) -> Self {
        let mut b = catalog::Builder::new();
        let m = Self {
            jobs_submitted: b.counter(
                "sluice_jobs_submitted_total",
                "Jobs accepted by the API and confirmed by the broker.",
                &["priority"],
            ),
            fair_window_calls: b.gauge(
                "sluice_fair_window_calls",
                "Provider calls' worth of jobs a worker's fair gate lets wait for a provider at once (passed on, call not yet sent; a chat job is a call, `max_batch_size` completions or embeddings jobs are one): the configured `[worker.fair] window_calls` while calls go out at once, less while they wait for the provider's budget or concurrency.",
            ),
            http_requests: b.histogram(
                "sluice_http_request_duration_seconds",
                "Seconds the API took to answer, by method, route template and status.",
                &["method", "route", "status"],
                seconds(),
            ),
            publish_confirms: b.counter(
                "sluice_publish_confirms_total",
                "Publisher confirms of job messages: ok, nack, unroutable, timeout or unavailable.",
                &["outcome"],
            ),
            tenant_budget_used: b.float_gauge(
                "sluice_tenant_budget_used_ratio",
                "A capped tenant's spend this month over its monthly cap (1 = at the cap), as the API last read it.",
                &["tenant"],
            ),
            batch_lines_made: b.plain_counter(
                "sluice_batch_lines_made_total",
                "Lines of Batch API batches (`/v1/batches`) made into jobs (answered from the cache, joined to a job in flight, or queued at priority batch).",
            ),
            batches_ended: b.counter(
                "sluice_batches_ended_total",
                "Batch API batches that ended: completed, expired, cancelled or failed (validation).",
                &["status"],
            ),
            queue_depth: b.gauge_vec(
                "sluice_queue_depth",
                "Messages ready in each queue (interactive, standard, batch, dead), read from the broker every few seconds. A message holds up to `jobs.pack_jobs` jobs.",
                &["queue"],
            ),
            queue_wait: b.histogram(
                "sluice_queue_wait_seconds",
                "Seconds a job waited in the queue: from its acceptance by the API to its start by a worker, just before its provider call (`ledger::queue_wait`; a job that joined an identical one never starts and is not counted).",
                &["priority"],
                seconds(),
            ),
            jobs_finished: b.counter(
                "sluice_jobs_finished_total",
                "Jobs that reached a terminal status.",
                &["status"],
            ),
            jobs_answered: b.counter(
                "sluice_jobs_answered_total",
                "Jobs answered, by the tier that answered them: cache (a cached answer or an identical job's), realtime, flex or provider_batch.",
                &["tier"],
            ),
            job_duration: b.histogram(
                "sluice_job_duration_seconds",
                "Seconds from a job's acceptance by the API to its end by a worker (queue, batching, provider call and store: what a caller waits), by priority and by the tier that answered it (none: failed or expired).",
                &["priority", "tier"],
                vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0, 7200.0, 86_400.0,
                ],
            ),
            inflight_jobs: b.gauge(
                "sluice_inflight_jobs",
                "Jobs a worker holds unacked.",
            ),
            fair_held_jobs: b.gauge_vec(
                "sluice_fair_held_jobs",
                "Jobs a worker's fair gate holds (taken from the queue, unacked, and part of `sluice_inflight_jobs`) waiting for their turn at a provider, by priority class: the tenant served least goes next, and a key at its cap on jobs in flight waits here.",
                &["priority"],
            ),
            batch_size: b.histogram(
                "sluice_batch_size",
                "Jobs in each batch a worker sent to a provider.",
                &["endpoint"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            batch_flushes: b.counter(
                "sluice_batch_flushes_total",
                "Batches flushed, by what flushed them: size, tokens, wait, idle (alone at once: no other job was expected within the wait) or shutdown.",
                &["reason"],
            ),
            batch_wait: b.histogram(
                "sluice_batch_wait_seconds",
                "Seconds a batch stayed open, from its first job to its flush, by flush reason.",
                &["reason"],
                seconds(),
            ),
            provider_duration: b.histogram(
                "sluice_provider_request_duration_seconds",
                "Seconds each provider call took; outcome is ok, rejected (a 4xx retrying cannot help) or unavailable.",
                &["provider", "endpoint", "outcome"],
                seconds(),
            ),
            provider_errors: b.counter(
                "sluice_provider_errors_total",
                "Failed provider calls, by kind: timeout, connect, rate_limited, server, rejected or bad_response.",
                &["provider", "endpoint", "kind"],
            ),
            provider_breaker_state: b.gauge_vec(
                "sluice_provider_breaker_state",
                "Each provider's circuit breaker: 0 closed, 1 open, 2 half-open.",
                &["provider"],
            ),
            provider_concurrency_limit: b.gauge_vec(
                "sluice_provider_concurrency_limit",
                "Calls to each provider this process lets be in flight at once: max_concurrency, or the limit found by additive increase and multiplicative decrease against latency_target_ms.",
                &["provider"],
            ),
            provider_budget_wait: b.histogram(
                "sluice_provider_budget_wait_seconds",
                "Seconds a provider call waited for the provider's fleet-wide request and token budget.",
                &["provider"],
                seconds(),
            ),
            provider_calls_repeated: b.counter(
                "sluice_provider_calls_repeated_total",
                "Provider calls billed beyond each job's own (orphaned: the worker died during the call; superseded: another delivery ended the job first; abandoned: the worker gave up on the call after it reached the provider, a timeout or a broken connection, and called again).",
                &["provider", "reason"],
            ),
            flex_fallbacks: b.counter(
                "sluice_flex_fallbacks_total",
                "Flex calls whose jobs went on to a standard call: unavailable (the provider refused flex, 429) or failed (an error, or no answer within the time the deadline left).",
                &["provider", "reason"],
            ),
            provider_batches: b.gauge_vec(
                "sluice_provider_batches",
                "Provider batches not done, by provider and state (collecting, submitting, submitted), as the fleet's record in PostgreSQL holds them.",
                &["provider", "state"],
            ),
            provider_batch_turnaround: b.histogram(
                "sluice_provider_batch_turnaround_seconds",
                "Seconds from a provider batch's submission to its end at the provider, by the state it ended in (completed, expired, cancelled, failed).",
                &["provider", "state"],
                exponential_buckets(1.0, 2.0, 18).unwrap_or_default(),
            ),
            provider_batch_reroutes: b.counter(
                "sluice_provider_batch_reroutes_total",
                "Jobs of provider batches sent back to the queue for real time: hedge (the batch was not done by the deadline less the margin), refused (the provider refused the batch) or line (a line worth another try, or never run).",
                &["provider", "reason"],
            ),
            tokens: b.counter(
                "sluice_tokens_total",
                "Tokens of finished jobs as the provider reported them; kind is prompt, completion, cached (prompt tokens read from the provider's cache) or cache_write.",
                &["model", "tenant", "kind"],
            ),
            cost_micros: b.counter(
                "sluice_cost_micros_total",
                "What finished jobs cost at the price table, in micro-dollars.",
                &["model", "tenant"],
            ),
            cache_requests: b.counter(
                "sluice_cache_requests_total",
                "Cache lookups, by kind (exact, semantic, inflight) and outcome (hit, miss, error).",
                &["kind", "outcome"],
            ),
            cache_saved_micros: b.plain_counter(
                "sluice_cache_saved_micros_total",
                "Micro-dollars cache hits did not spend (what the answers cost when made).",
            ),
            semantic_refusals: b.counter(
                "sluice_cache_semantic_refusals_total",
                "Semantic neighbours the verifier did not serve, by reason (number, negation, date, opposite, degree, counterpart, no_text, judge).",
                &["reason"],
            ),
            semantic_lookup: b.histogram(
                "sluice_cache_semantic_lookup_seconds",
                "Seconds a semantic lookup took until its verdict (the question embedded, the neighbours read, the verifier's calls), by outcome (hit, miss, error).",
                &["outcome"],
                lookup_seconds(),
            ),
            semantic_expected_wrong_micros: b.plain_counter(
                "sluice_cache_semantic_expected_wrong_micros_total",
                "Wrong answers expected among served semantic hits, in millionths of a hit: each hit adds the expected error of the check that let it serve (the word check's calibration, or the judge's judge_error).",
            ),
            semantic_error_estimate: b.float_gauge(
                "sluice_cache_semantic_error_estimate",
                "Expected share of served semantic hits that are wrong answers, since the process started (the word check's calibration on the probe set, or the judge's configured judge_error).",
                &[],
            ),
            webhook_attempts: b.counter(
                "sluice_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (succeeded, failed, exhausted, gone, disabled).",
                &["outcome"],
            ),
            webhook_exhausted: b.plain_counter(
                "sluice_webhook_exhausted_total",
                "Webhook deliveries that failed every attempt of the schedule.",
            ),
            webhook_attempt_duration: b.histogram(
                "sluice_webhook_attempt_duration_seconds",
                "Seconds each webhook attempt took, by outcome.",
                &["outcome"],
                seconds(),
            ),
            queue_ready_jobs: b.gauge_vec(
                "sluice_queue_ready_jobs",
                "Jobs ready in each job queue (interactive, standard, batch): its ready messages times the jobs per message the worker's consumers saw lately, packs counted as their jobs. Plus `sum(sluice_inflight_jobs)` (jobs the workers hold unacked), the job backlog autoscaling reads.",
                &["queue"],
            ),
            queue_taken_enqueued: b.float_gauge(
                "sluice_queue_taken_enqueued_timestamp_seconds",
                "Unix time at which the job a worker last took from each job queue was accepted; while the queue holds ready jobs, `time()` minus it bounds the age of the oldest one.",
                &["queue"],
            ),
            options,
            catalog: Vec::new(),
            registry: Registry::new(),
        };
        let (registry, catalog) = b.finish();
        Self {
            registry,
            catalog,
            ..m
        }
    }

    /// Every metric: name, type, labels and help, in declaration order.
    pub fn catalog(&self) -> &[Entry] {
        &self.catalog
    }

    /// The value of a `tenant` label: the tenant, or empty when tenant
    /// labels are off.
    pub fn tenant<'a>(&self, tenant: &'a str) -> &'a str {
        if self.options.tenant_label {
            tenant
        } else {
            ""
        }
    }

    /// Counts a finished job's tokens and cost.
    pub fn record_usage(&self, model: &str, tenant: &str, usage: &Usage, cost_micros: Option<u64>) {
        let tenant = self.tenant(tenant);
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
            ("cache_write", usage.cache_write_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .with_label_values(&[model, tenant, kind])
                    .inc_by(n);
            }
        }
        if let Some(cost) = cost_micros {
            self.cost_micros
                .with_label_values(&[model, tenant])
                .inc_by(cost);
        }
    }

    /// Counts the tokens and cost of a job this worker just ended, the
    /// tier that answered it, and how long it took from its acceptance.
    pub fn record_job_usage(&self, message: &crate::JobMessage, outcome: &crate::job::Outcome) {
        if let crate::job::Outcome::Succeeded {
            usage, cost_micros, ..
        } = outcome
        {
            self.record_usage(&message.model, &message.tenant_id, usage, *cost_micros);
        }
        let tier = outcome.tier();
        if let Some(tier) = tier {
            self.answered(tier, 1);
        }
        let took = (chrono::Utc::now() - message.enqueued_at)
            .to_std()
            .unwrap_or_default();
        self.job_duration
            .with_label_values(&[
                message.priority.as_str(),
                tier.map_or("none", crate::Tier::as_str),
            ])
            .observe(took.as_secs_f64());
    }

    /// Counts a served semantic hit expected to be wrong with probability
    /// `expected_error`, and updates the running estimate. (The hit itself
    /// is counted in `cache_requests`.)
    pub fn semantic_served(&self, expected_error: f64) {
        let micros = (expected_error.clamp(0.0, 1.0) * 1e6).round() as u64;
        self.semantic_expected_wrong_micros.inc_by(micros);
        let hits = self
            .cache_requests
            .with_label_values(&["semantic", "hit"])
            .get();
        if hits > 0 {
            let expected = self.semantic_expected_wrong_micros.get() as f64 / 1e6;
            self.semantic_error_estimate
                .with_label_values(&[] as &[&str])
                .set(expected / hits as f64);
        }
    }

    /// Counts `jobs` answered on `tier`.
    pub fn answered(&self, tier: crate::Tier, jobs: u64) {
        self.jobs_answered
            .with_label_values(&[tier.as_str()])
            .inc_by(jobs);
    }

    /// Shows a capped tenant's spend over its cap (not when tenant labels
    /// are off: one series cannot say which tenant is near its cap).
    pub fn record_budget(&self, tenant: &str, spent_micros: u64, cap_micros: u64) {
        if !self.options.tenant_label {
            return;
        }
        let ratio = if cap_micros == 0 {
            1.0
        } else {
            spent_micros as f64 / cap_micros as f64
        };
        self.tenant_budget_used
            .with_label_values(&[tenant])
            .set(ratio);
    }

    /// The registry, for roles that add metrics of their own (declare them
    /// here instead, so that the catalog lists them).
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

    #[test]
    fn tokens_and_cost_drop_the_tenant_when_asked() {
        let usage = Usage::new(10, 5, 4);
        let on = Metrics::new();
        on.record_usage("m", "acme", &usage, Some(70));
        on.record_budget("acme", 90, 100);
        let text = on.render();
        assert!(
            text.contains(r#"sluice_tokens_total{kind="prompt",model="m",tenant="acme"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_cost_micros_total{model="m",tenant="acme"} 70"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_tenant_budget_used_ratio{tenant="acme"} 0.9"#),
            "{text}"
        );

        let off = Metrics::with_options(MetricsOptions {
            tenant_label: false,
        });
        off.record_usage("m", "acme", &usage, Some(70));
        off.record_usage("m", "globex", &usage, Some(30));
        off.record_budget("acme", 90, 100);
        let text = off.render();
        assert!(!text.contains("acme") && !text.contains("globex"), "{text}");
        assert!(
            text.contains(r#"sluice_cost_micros_total{model="m",tenant=""} 100"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_tokens_total{kind="completion",model="m",tenant=""} 10"#),
            "{text}"
        );
        assert!(!text.contains("sluice_tenant_budget_used_ratio{"), "{text}");
    }
}
