//! The economics bench's tables: the published table's shape, the full
//! figures per mode, the sweep, and the targets.

use std::fmt::Write as _;
use std::time::Duration;

use super::profile::{OwnLimit, Profile};
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
    out.push_str(&own_limits(outcome, profile));
    out.push_str(&tiers(outcome));
    out.push_str(&targets(outcome));
    out.push_str(&tier_targets(outcome, profile));
    out
}

/// The self-hosted sweeps side by side, one per limit on Sluice's calls
/// to the server: the most users within the SLO, the P95 and cost per 1k
/// at that load (the sweep's phase at it), and whether the adaptive limit
/// serves at least as many users as the best fixed one.
pub fn own_limits(outcome: &Outcome, profile: &Profile) -> String {
    let swept: Vec<(OwnLimit, usize, Option<&Point>)> = outcome
        .sweeps
        .iter()
        .filter_map(|(mode, max, points)| match mode {
            Mode::SelfHosted(limit) => {
                Some((*limit, *max, points.iter().find(|p| p.users == *max)))
            }
            _ => None,
        })
        .collect();
    if swept.len() < 2 {
        return String::new();
    }
    let mut out = format!(
        "\n### Self-hosted: Sluice's calls to the server ({} sequences at once)\n\n\
         | calls in flight per worker | max users within the SLO | P95 at that load | \
         cost per 1k at that load | adaptive limit per worker at that load |\n\
         |---|---|---|---|---|\n",
        profile.self_hosted.concurrency
    );
    for (limit, max, at) in &swept {
        let (p95, cost) = at.map_or(("–".into(), "–".into()), |p| {
            (
                ms(profile, p.measured.quantile(0.95)),
                format!("${:.2}", p.cost_per_1k()),
            )
        });
        let found = at.filter(|p| !p.found.is_empty()).map_or("–".into(), |p| {
            p.found
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(
            out,
            "| {} | {max} | {p95} | {cost} | {found} |",
            limit.describe()
        );
    }
    // Of fixed settings that tie, the first swept (the lowest, as listed).
    let best_fixed = swept
        .iter()
        .filter(|(limit, ..)| *limit != OwnLimit::Adaptive)
        .fold(
            None,
            |best: Option<&(OwnLimit, usize, Option<&Point>)>, s| match best {
                Some(b) if b.1 >= s.1 => Some(b),
                _ => Some(s),
            },
        );
    let adaptive = swept
        .iter()
        .find(|(limit, ..)| *limit == OwnLimit::Adaptive);
    if let (Some((fixed, best, _)), Some((_, found, _))) = (best_fixed, adaptive) {
        let _ = writeln!(
            out,
            "\n- adaptive: {found} users against the best fixed setting's {best} ({}): {}",
            fixed.describe(),
            if found >= best { "met" } else { "missed" }
        );
    }
    out
}

/// Sluice's jobs of each phase by the tier that answered them.
fn tiers(outcome: &Outcome) -> String {
    let rows: Vec<(&Point, &(String, u64, u64))> = outcome
        .table
        .iter()
        .flat_map(|p| p.tiers.iter().map(move |t| (p, t)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### By tier\n\nSluice's jobs of each phase by the tier that answered them \
         (its usage report, `group_by=tier`); deferrable requests ran in the background and \
         are not in the latencies.\n\n| approach | tier | jobs | cost | per 1k of its jobs |\n\
         |---|---|---|---|---|\n",
    );
    for (p, (tier, jobs, cost)) in rows {
        let per_1k = if *jobs == 0 {
            0.0
        } else {
            *cost as f64 / 1e6 / *jobs as f64 * 1_000.0
        };
        let _ = writeln!(
            out,
            "| {} | {tier} | {jobs} | ${:.2} | ${per_1k:.2} |",
            p.mode.name(),
            *cost as f64 / 1e6,
        );
    }
    out
}

/// The cost-tier targets, when the workload has deferrable requests: the
/// cost against the floor the workload allows (repeats free, deferrable
/// misses at the batch price, the rest at the standard price, each priced
/// at what direct calls paid per request in the same run), interactive P95
/// against direct's, and the users served.
pub fn tier_targets(outcome: &Outcome, profile: &Profile) -> String {
    let (Some(direct), Some(sluice)) = (outcome.at(Mode::Direct), outcome.at(Mode::Sluice)) else {
        return String::new();
    };
    let m = &sluice.measured;
    if m.deferred == 0 && m.deferred_failed == 0 {
        return String::new();
    }
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let mut out = String::from("\n### Targets with deferrable work (sluice against direct)\n\n");
    let floor = direct.cost_per_1k() * m.answered_by.floor_share();
    let over = sluice.cost_per_1k() / floor.max(f64::MIN_POSITIVE) - 1.0;
    let _ = writeln!(
        out,
        "- cost per 1k: ${:.2} against the floor ${floor:.2} ({} repeats, {} deferrable and {} \
         interactive misses answered; direct ${:.2}): {:+.1}% (target within 3%): {}",
        sluice.cost_per_1k(),
        m.answered_by.repeats,
        m.answered_by.deferrable,
        m.answered_by.interactive,
        direct.cost_per_1k(),
        over * 100.0,
        verdict(over <= 0.03)
    );
    let (d95, s95) = (direct.measured.quantile(0.95), m.quantile(0.95));
    let _ = writeln!(
        out,
        "- interactive P95 at {} users: {} against direct's {} (target: no worse): {}",
        outcome.users,
        ms(profile, s95),
        ms(profile, d95),
        verdict(s95 <= d95)
    );
    let _ = writeln!(
        out,
        "- deferrable requests: {} answered, {} not",
        m.deferred, m.deferred_failed
    );
    if let (Some(d), Some(s)) = (
        outcome.max_users(Mode::Direct),
        outcome.max_users(Mode::Sluice),
    ) {
        let ratio = s as f64 / d.max(1) as f64;
        let _ = writeln!(
            out,
            "- max users: {s} against {d}, {ratio:.1} × (target ≥ 4 ×): {}",
            verdict(ratio >= 4.0)
        );
    }
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
            tiers: Vec::new(),
            found: Vec::new(),
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
        assert_eq!(
            tier_targets(&outcome, &profile()),
            "",
            "no deferrable work, no tier targets"
        );
    }

    /// A profile at full scale: times are reported as measured.
    fn profile() -> Profile {
        Profile {
            scale: 1.0,
            paid: crate::econ::profile::Paid::default(),
            flex: crate::econ::profile::Flex::default(),
            batches: crate::econ::profile::Batches::default(),
            latency: crate::econ::profile::Latency::default(),
            self_hosted: crate::econ::profile::SelfHosted {
                micros_per_hour: 1,
                concurrency: 1,
            },
        }
    }

    #[test]
    fn the_self_hosted_table_sets_adaptive_against_the_best_fixed_setting() {
        let sweep = |limit: OwnLimit, max: usize, found: Vec<u64>| {
            let mut at = point(Mode::SelfHosted(limit), 1_500_000, 900);
            at.users = max;
            at.found = found;
            let mut over = at.clone();
            over.users = max * 2;
            (Mode::SelfHosted(limit), max, vec![at, over])
        };
        let mut outcome = Outcome {
            table: Vec::new(),
            sweeps: vec![
                (Mode::Direct, 100, Vec::new()),
                sweep(OwnLimit::Fixed(2), 400, Vec::new()),
                sweep(OwnLimit::Fixed(8), 1_100, Vec::new()),
                sweep(OwnLimit::Fixed(16), 1_100, Vec::new()),
                sweep(OwnLimit::Adaptive, 1_000, vec![9, 11]),
            ],
            users: 100,
            slo: Duration::from_secs(2),
        };
        let t = own_limits(&outcome, &profile());
        assert!(
            t.contains("| 2 per worker, fixed | 400 | 900 ms | $1.50 | – |"),
            "{t}"
        );
        assert!(
            t.contains("| adaptive (latency target = SLO) | 1000 | 900 ms | $1.50 | 9, 11 |"),
            "{t}"
        );
        assert!(
            t.contains("adaptive: 1000 users against the best fixed setting's 1100 (8 per worker, fixed): missed"),
            "{t}"
        );
        outcome.sweeps.truncate(2);
        assert_eq!(
            own_limits(&outcome, &profile()),
            "",
            "one self-hosted sweep, nothing to compare"
        );
    }

    #[test]
    fn the_floor_frees_repeats_and_halves_deferrable_misses() {
        let mut sluice = point(Mode::Sluice, 1_300_000, 600);
        sluice.measured.deferred = 400;
        // 1,000 answered: 600 repeats, 200 deferrable, 200 interactive misses.
        sluice.measured.answered_by = crate::econ::users::Classes {
            repeats: 600,
            deferrable: 200,
            interactive: 200,
        };
        let outcome = Outcome {
            table: vec![point(Mode::Direct, 4_000_000, 1_200), sluice],
            sweeps: Vec::new(),
            users: 100,
            slo: Duration::from_secs(2),
        };
        // Floor: $4.00 × (200 + 100) / 1000 = $1.20; $1.30 is 8.3% over.
        let t = tier_targets(&outcome, &profile());
        assert!(t.contains("$1.30 against the floor $1.20"), "{t}");
        assert!(t.contains("+8.3% (target within 3%): missed"), "{t}");
        assert!(
            t.contains("600 ms against direct's 1200 ms (target: no worse): met"),
            "{t}"
        );
    }
}
