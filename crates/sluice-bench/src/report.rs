//! The figures, as a markdown table (and JSON).

use serde::Serialize;

use crate::raw::RawCeiling;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub raw: Option<RawCeiling>,
    /// The publish ceiling measured again after the stack's phases: the
    /// machine's speed drifts, and the targets use the higher of the two.
    pub raw_after: Option<RawCeiling>,
    pub steady: Vec<Steady>,
    pub backlog: Option<Backlog>,
    /// The same backlog phase, its jobs submitted in batches.
    pub backlog_batches: Option<Backlog>,
    pub limiter: Option<Limiter>,
}

#[derive(Debug, Serialize)]
pub struct Steady {
    pub jobs_per_request: usize,
    pub clients: usize,
    pub jobs: usize,
    pub accepted: usize,
    pub errors: usize,
    pub accepted_per_s: f64,
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    pub finished_per_s: f64,
    /// Where the phase's CPU went (Linux), per process group.
    pub cpu: Option<crate::cpu::Split>,
}

#[derive(Debug, Serialize)]
pub struct Limiter {
    pub jobs: usize,
    pub off_p50_ms: f64,
    pub off_p99_ms: f64,
    pub on_p50_ms: f64,
    pub on_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Backlog {
    pub jobs: usize,
    pub jobs_per_request: usize,
    pub clients: usize,
    pub ingest_per_s: f64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    pub drain_per_s: f64,
    pub worker_peak_rss_mib: f64,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::from("| measure | value | target |\n|---|---|---|\n");
        let mut row =
            |m: &str, v: String, t: String| out.push_str(&format!("| {m} | {v} | {t} |\n"));
        let ceiling = self
            .raw
            .iter()
            .chain(&self.raw_after)
            .map(|r| r.publish_per_s)
            .fold(0.0, f64::max);
        if let Some(r) = &self.raw {
            let after = self
                .raw_after
                .as_ref()
                .map(|a| format!("; {:.0} after the run", a.publish_per_s))
                .unwrap_or_default();
            row(
                "broker raw publish (confirmed, persistent, quorum)",
                format!("{:.0} msg/s before the run{after}", r.publish_per_s),
                "baseline: the higher".into(),
            );
            row(
                "broker raw publish, one message per call, 256 calls at once",
                format!("{:.0} msg/s", r.publish_single_per_s),
                "baseline".into(),
            );
            row(
                "broker raw consume (acked one by one)",
                format!("{:.0} msg/s", r.consume_per_s),
                "baseline".into(),
            );
        }
        for s in &self.steady {
            let how = format!(
                "{} job(s) per request, {} clients",
                s.jobs_per_request, s.clients
            );
            row(
                &format!("API accepted jobs/s ({how})"),
                format!(
                    "{:.0} ({} of {}, {} not accepted)",
                    s.accepted_per_s, s.accepted, s.jobs, s.errors
                ),
                format!("≥ {:.0} (½ raw publish)", ceiling / 2.0),
            );
            row(
                &format!("submit latency p50 / p99 ({how})"),
                format!("{:.1} / {:.1} ms", s.submit_p50_ms, s.submit_p99_ms),
                "—".into(),
            );
            row(
                &format!("finished jobs/s end to end ({how})"),
                format!("{:.0}", s.finished_per_s),
                format!("≥ {:.0} (⅓ raw publish)", ceiling / 3.0),
            );
            if let Some(cpu) = &s.cpu {
                row(
                    &format!("CPU, cores busy on average ({how})"),
                    cpu.line(),
                    "—".into(),
                );
            }
        }
        if let Some(l) = &self.limiter {
            row(
                &format!(
                    "submit p50 / p99, tenant limiter off ({} jobs, 32 clients)",
                    l.jobs
                ),
                format!("{:.2} / {:.2} ms", l.off_p50_ms, l.off_p99_ms),
                "baseline".into(),
            );
            row(
                &format!(
                    "submit p50 / p99, tenant limiter on ({} jobs, 32 clients)",
                    l.jobs
                ),
                format!("{:.2} / {:.2} ms", l.on_p50_ms, l.on_p99_ms),
                format!(
                    "p99 within 1 ms of off (now {:+.2} ms)",
                    l.on_p99_ms - l.off_p99_ms
                ),
            );
        }
        for b in self.backlog.iter().chain(&self.backlog_batches) {
            let how = format!(
                "{} job(s) per request, {} clients",
                b.jobs_per_request, b.clients
            );
            row(
                &format!("API accepted jobs/s, workers stopped ({how})"),
                format!(
                    "{:.0} (p50 {:.1} ms, p99 {:.1} ms)",
                    b.ingest_per_s, b.ingest_p50_ms, b.ingest_p99_ms
                ),
                format!("≥ {:.0} (½ raw publish)", ceiling / 2.0),
            );
            row(
                &format!("backlog drain, one worker ({how})"),
                format!("{:.0} jobs/s ({} jobs)", b.drain_per_s, b.jobs),
                "—".into(),
            );
            row(
                &format!("worker peak RSS with the backlog waiting ({how})"),
                format!("{:.1} MiB", b.worker_peak_rss_mib),
                "< 150 MiB".into(),
            );
        }
        out
    }
}
