//! The economics bench's charts, as plain SVG: the latency CDF of each
//! mode, the cost of each mode, and P95 against users from the sweeps.

use std::fmt::Write as _;
use std::path::Path;

use super::profile::OwnLimit;
use super::profile::Profile;
use super::report::Outcome;
use super::run::Mode;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn colour(mode: Mode) -> &'static str {
    match mode {
        Mode::Direct => "#d62728",
        Mode::Sluice => "#1f77b4",
        Mode::SluiceNoCache => "#ff7f0e",
        Mode::SelfHosted(OwnLimit::Default) => "#2ca02c",
        Mode::SelfHosted(OwnLimit::Adaptive) => "#9467bd",
        // Fixed limits: from light to dark as they double.
        Mode::SelfHosted(OwnLimit::Fixed(n)) => {
            const GREENS: [&str; 6] = [
                "#c7e9c0", "#a1d99b", "#74c476", "#41ab5d", "#238b45", "#005a32",
            ];
            GREENS[(n.max(1).ilog2() as usize).min(GREENS.len() - 1)]
        }
    }
}

/// Writes `latency_cdf.svg`, `cost.svg` and `p95_vs_users.svg` into `dir`.
pub fn write_all(dir: &Path, outcome: &Outcome, profile: &Profile) -> std::io::Result<()> {
    std::fs::write(dir.join("latency_cdf.svg"), latency_cdf(outcome, profile))?;
    std::fs::write(dir.join("cost.svg"), cost(outcome))?;
    std::fs::write(dir.join("p95_vs_users.svg"), p95_vs_users(outcome, profile))?;
    Ok(())
}

/// The least round number at or above `v` whose fifth is a round step
/// (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten), so that
/// five ticks read well and little of the axis is wasted.
fn nice(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let step = v / 5.0;
    let magnitude = 10f64.powf(step.log10().floor());
    let round = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= step * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    round * 5.0
}

/// A plot area with linear axes from 0 to `x_max` and `y_max`.
struct Frame {
    svg: String,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn new(title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64) -> Self {
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\n\
             <text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>\n",
            (LEFT + W - RIGHT) / 2.0,
            (LEFT + W - RIGHT) / 2.0,
            H - 10.0,
            (TOP + H - BOTTOM) / 2.0,
        );
        let _ = writeln!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
            W - LEFT - RIGHT,
            H - TOP - BOTTOM
        );
        Self {
            svg,
            x_max: x_max.max(f64::MIN_POSITIVE),
            y_max: y_max.max(f64::MIN_POSITIVE),
        }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + (v / self.x_max).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - (v / self.y_max).clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    }

    /// Five ticks on each axis, labelled by `fx` and `fy`.
    fn ticks(&mut self, fx: impl Fn(f64) -> String, fy: impl Fn(f64) -> String) {
        for i in 0..=5 {
            let (vx, vy) = (self.x_max * i as f64 / 5.0, self.y_max * i as f64 / 5.0);
            let (x, y) = (self.x(vx), self.y(vy));
            let _ = writeln!(
                self.svg,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
                 <line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                H - BOTTOM,
                H - BOTTOM + 5.0,
                H - BOTTOM + 18.0,
                fx(vx),
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                fy(vy),
            );
        }
    }

    fn line(&mut self, points: &[(f64, f64)], colour: &str, dashed: bool) {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.x(x), self.y(y)))
            .collect();
        let dash = if dashed {
            " stroke-dasharray=\"6,4\""
        } else {
            ""
        };
        let _ = writeln!(
            self.svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
            path.join(" ")
        );
    }

    fn dots(&mut self, points: &[(f64, f64)], colour: &str) {
        for &(x, y) in points {
            let _ = writeln!(
                self.svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                self.x(x),
                self.y(y)
            );
        }
    }

    fn legend(&mut self, row: usize, label: &str, colour: &str) {
        let y = TOP + 10.0 + row as f64 * 20.0;
        let x = W - RIGHT + 12.0;
        let _ = writeln!(
            self.svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\">{label}</text>",
            y - 4.0,
            x + 20.0,
            y + 1.0
        );
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// The share of each mode's requests answered within a time.
pub fn latency_cdf(outcome: &Outcome, profile: &Profile) -> String {
    let x_max = outcome
        .table
        .iter()
        .filter(|p| !p.measured.latencies.is_empty())
        .map(|p| profile.full_ms(p.measured.quantile(0.99)))
        .fold(0.0, f64::max)
        * 1.1;
    let x_max = nice(x_max);
    let title = format!("Latency users see, {} users (CDF)", outcome.users);
    let mut f = Frame::new(
        &title,
        "latency (ms, full scale)",
        "share of requests",
        x_max,
        1.0,
    );
    f.ticks(|v| format!("{v:.0}"), |v| format!("{v:.1}"));
    for (row, p) in outcome.table.iter().enumerate() {
        let n = p.measured.count().max(1) as f64;
        let lat = &p.measured.latencies;
        // At most 400 steps per line.
        let step = (lat.len() / 400).max(1);
        let mut points = vec![(0.0, 0.0)];
        points.extend(
            lat.iter()
                .enumerate()
                .filter(|(i, _)| i % step == 0 || *i + 1 == lat.len())
                .map(|(i, d)| (profile.full_ms(*d), (i + 1) as f64 / n)),
        );
        f.line(&points, colour(p.mode), false);
        f.legend(row, &p.mode.name(), colour(p.mode));
    }
    f.finish()
}

/// Dollars per 1,000 requests, a bar per mode.
pub fn cost(outcome: &Outcome) -> String {
    let y_max = outcome
        .table
        .iter()
        .map(|p| p.cost_per_1k())
        .fold(0.0, f64::max)
        * 1.15;
    let y_max = nice(y_max);
    let title = format!("Cost per 1,000 requests, {} users", outcome.users);
    let n = outcome.table.len().max(1) as f64;
    let mut f = Frame::new(&title, "", "dollars per 1k requests", n, y_max);
    f.ticks(|_| String::new(), |v| format!("${v:.2}"));
    for (i, p) in outcome.table.iter().enumerate() {
        let (x0, x1) = (f.x(i as f64 + 0.2), f.x(i as f64 + 0.8));
        let (y, base) = (f.y(p.cost_per_1k()), f.y(0.0));
        let _ = writeln!(
            f.svg,
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">${:.2}</text>",
            x1 - x0,
            base - y,
            colour(p.mode),
            (x0 + x1) / 2.0,
            y - 5.0,
            p.cost_per_1k()
        );
        f.legend(i, &p.mode.name(), colour(p.mode));
    }
    f.finish()
}

/// Each sweep's P95 against its users, with the SLO as a dashed line.
pub fn p95_vs_users(outcome: &Outcome, profile: &Profile) -> String {
    let slo = profile.full_ms(outcome.slo);
    let x_max = outcome
        .sweeps
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|p| p.users as f64))
        .fold(0.0, f64::max)
        * 1.05;
    let (x_max, y_max) = (nice(x_max), nice(slo * 2.0));
    let mut f = Frame::new(
        "P95 against concurrent users (sweeps)",
        "concurrent users",
        "P95 (ms, full scale; clipped at the top)",
        x_max,
        y_max,
    );
    f.ticks(|v| format!("{v:.0}"), |v| format!("{v:.0}"));
    f.line(&[(0.0, slo), (x_max, slo)], "#888", true);
    let mut row = 0;
    for (mode, _, points) in &outcome.sweeps {
        let mut xy: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.users as f64, profile.full_ms(p.measured.quantile(0.95))))
            .collect();
        xy.sort_by(|a, b| a.0.total_cmp(&b.0));
        f.line(&xy, colour(*mode), false);
        f.dots(&xy, colour(*mode));
        f.legend(row, &mode.name(), colour(*mode));
        row += 1;
    }
    f.legend(row, "SLO", "#888");
    f.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::econ::profile::{Flex, Latency, Paid, SelfHosted};
    use crate::econ::run::Point;
    use crate::econ::users::Measured;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(1.0), 1.0);
        assert_eq!(nice(4.33), 5.0);
        assert_eq!(nice(1_680.0), 2_000.0);
        assert_eq!(nice(4_000.0), 4_000.0);
        assert_eq!(nice(5_494.0), 6_000.0);
        assert_eq!(nice(1_100.0), 1_250.0);
        assert_eq!(nice(0.0), 1.0);
    }

    fn point(mode: Mode, users: usize, ms: u64) -> Point {
        Point {
            mode,
            users,
            measured: Measured {
                latencies: (1..=ms).map(Duration::from_millis).collect(),
                sent: ms as usize,
                answered: ms as usize,
                ..Measured::default()
            },
            cost_micros: 1_000 * ms,
            provider_calls: 0,
            rate_limited: 0,
            tiers: Vec::new(),
            found: Vec::new(),
        }
    }

    #[test]
    fn charts_are_svg_with_a_line_or_bar_per_mode() {
        let profile = Profile {
            scale: 0.1,
            paid: Paid::default(),
            flex: Flex::default(),
            batches: crate::econ::profile::Batches::default(),
            latency: Latency::default(),
            self_hosted: SelfHosted {
                micros_per_hour: 1,
                concurrency: 1,
            },
        };
        let outcome = Outcome {
            table: vec![point(Mode::Direct, 10, 120), point(Mode::Sluice, 10, 40)],
            sweeps: vec![(
                Mode::Direct,
                20,
                vec![point(Mode::Direct, 10, 100), point(Mode::Direct, 20, 150)],
            )],
            users: 10,
            slo: Duration::from_millis(200),
        };
        let cdf = latency_cdf(&outcome, &profile);
        assert!(cdf.starts_with("<svg") && cdf.trim_end().ends_with("</svg>"));
        assert_eq!(cdf.matches("<polyline").count(), 2);
        assert!(cdf.contains("direct calls") && cdf.contains("sluice (batching + cache)"));
        let bars = cost(&outcome);
        assert!(bars.contains("$1.00"), "{bars}");
        let sweep = p95_vs_users(&outcome, &profile);
        // The SLO line and one sweep.
        assert_eq!(sweep.matches("<polyline").count(), 2);
        assert_eq!(sweep.matches("<circle").count(), 2);
    }
}
