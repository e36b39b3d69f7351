//! The economics bench's tables: the published table's shape, the full
//! figures per mode, the sweep, and the targets.

use std::fmt::Write as _;
use std::time::Duration;

use super::profile::Profile;
use super::run::{Mode, Point};

/// What a run found, per mode.
pub struct Outcome {
    /// The phase of each mode at the table's user count.
    pub table: Vec<Point>,
    /// Each mode's sweep: its most users within the SLO and the phases run.
    pub sweeps: Vec<(Mode, usize, Vec<Point>)>,
    pub users: usize,
    pub slo: Duration,
}

impl Outcome {
    pub fn at(&self, mode: Mode) -> Option<&Point> {
        self.table.iter().find(|p| p.mode == mode)
    }

    pub fn max_users(&self, mode: Mode) -> Option<usize> {
        self.sweeps
            .iter()
            .find(|(m, ..)| *m == mode)
            .map(|(_, max, _)| *max)
    }
}

fn ms(profile: &Profile, d: Duration) -> String {
    let ms = profile.full_ms(d);
    if ms.is_infinite() {
        return "–".into();
    }
    format!("{ms:.0} ms")
}

fn users(n: Option<usize>) -> String {
    n.map_or("not swept".into(), |n| n.to_string())
}

/// The run as markdown: the command, the setting, the tables and the
/// targets.
pub fn markdown(outcome: &Outcome, profile: &Profile, command: &str, workload: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## sluice-bench econ\n\n```\n{command}\n```\n");
    let _ = writeln!(out, "- workload: {workload}");
    let _ = writeln!(out, "- setting: {}", profile.describe());
    let _ = writeln!(
        out,
        "- the table's phases run {} users each; max users is the largest count whose P95 stays \
         under {} with under 1% errors\n",
        outcome.users,
        ms(profile, outcome.slo),
    );
    out.push_str(
        "| approach | cost per 1k requests | P95 | max concurrent users |\n|---|---|---|---|\n",
    );
    for p in &outcome.table {
        let _ = writeln!(
            out,
            "| {} | ${:.2} | {} | {} |",
            p.mode.name(),
            p.cost_per_1k(),
            ms(profile, p.measured.quantile(0.95)),
            users(outcome.max_users(p.mode)),
        );
    }
    out.push_str(
        "\nCost per 1k is what the phase cost (the paid provider's bill, or the self-hosted \
         server's hours at full scale) over the requests answered in it, warm-up included. \
         Latencies and errors are those of the requests sent in the measured time, as users \
         saw them (submit to answer, 429 retries included); a request unanswered after the \
         timeout is an error. Requests and provider calls count the whole phase.\n",
    );
    out.push_str(
        "\n| approach | P50 | P95 | P99 | errors | requests | provider calls | 429s |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for p in &outcome.table {
        let m = &p.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}% | {} | {} | {} |",
            p.mode.name(),
            ms(profile, m.quantile(0.50)),
            ms(profile, m.quantile(0.95)),
            ms(profile, m.quantile(0.99)),
            m.error_rate() * 100.0,
            m.sent,
            p.provider_calls,
            p.rate_limited,
        );
    }
    if !outcome.sweeps.is_empty() {
        out.push_str("\n### The sweeps\n\n| approach | users | P95 | errors | within SLO |\n|---|---|---|---|---|\n");
    }
    for (mode, _, points) in &outcome.sweeps {
        for p in points {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}% | {} |",
                mode.name(),
                p.users,
                ms(profile, p.measured.quantile(0.95)),
                p.measured.error_rate() * 100.0,
                if p.within(outcome.slo) { "yes" } else { "no" },
            );
        }
    }
    out.push_str(&targets(outcome));
    out
}

/// The issue's three targets, each met or missed and by how much.
pub fn targets(outcome: &Outcome) -> String {
    let mut out = String::from("\n### Targets (sluice against direct)\n\n");
    let (Some(direct), Some(sluice)) = (outcome.at(Mode::Direct), outcome.at(Mode::Sluice)) else {
        return out + "Direct or sluice was not run.\n";
    };
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let cost = sluice.cost_per_1k() / direct.cost_per_1k().max(f64::MIN_POSITIVE);
    let _ = writeln!(
        out,
        "- cost per 1k: {:.1}% of direct (target ≤ 26%): {}",
        cost * 100.0,
        verdict(cost <= 0.26)
    );
    let p95 = sluice.measured.quantile(0.95).as_secs_f64()
        / direct
            .measured
            .quantile(0.95)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE);
    let _ = writeln!(
        out,
        "- P95 at {} users: {:.2} × direct's (target ≤ 0.25): {}",
        outcome.users,
        p95,
        verdict(p95 <= 0.25)
    );
    match (
        outcome.max_users(Mode::Direct),
        outcome.max_users(Mode::Sluice),
    ) {
        (Some(d), Some(s)) => {
            let ratio = s as f64 / d.max(1) as f64;
            let _ = writeln!(
                out,
                "- max users: {s} against {d}, {ratio:.1} × (target ≥ 16 ×): {}",
                verdict(ratio >= 16.0)
            );
        }
        _ => out.push_str("- max users: not swept\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::econ::users::Measured;

    fn point(mode: Mode, cost_micros: u64, p95_ms: u64) -> Point {
        Point {
            mode,
            users: 10,
            measured: Measured {
                latencies: vec![Duration::from_millis(p95_ms); 20],
                sent: 1_000,
                answered: 1_000,
                ..Measured::default()
            },
            cost_micros,
            provider_calls: 0,
            rate_limited: 0,
        }
    }

    #[test]
    fn targets_say_met_or_missed_with_the_figures() {
        let outcome = Outcome {
            table: vec![
                point(Mode::Direct, 4_200_000, 1_200),
                point(Mode::Sluice, 1_000_000, 600),
            ],
            sweeps: vec![
                (Mode::Direct, 100, Vec::new()),
                (Mode::Sluice, 2_000, Vec::new()),
            ],
            users: 100,
            slo: Duration::from_secs(2),
        };
        let t = targets(&outcome);
        assert!(t.contains("23.8% of direct (target ≤ 26%): met"), "{t}");
        assert!(t.contains("0.50 × direct's (target ≤ 0.25): missed"), "{t}");
        assert!(t.contains("20.0 × (target ≥ 16 ×): met"), "{t}");
        assert_eq!(outcome.at(Mode::Sluice).unwrap().cost_per_1k(), 1.0);
    }
}
