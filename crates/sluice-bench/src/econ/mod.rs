//! `sluice-bench econ`: the economics benchmark. The same workload, the
//! same simulated providers, four ways to serve it (direct calls, Sluice,
//! Sluice without its cache, Sluice in front of a self-hosted server), and
//! for each the cost per 1,000 requests from the provider's own bill, the
//! latency users see, the error rate, and the most users served within an
//! SLO, found by a sweep. Writes the tables as markdown and the charts as
//! SVG.

pub mod charts;
mod clients;
pub mod profile;
mod report;
mod run;
mod users;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use self::profile::{Flex, Latency, OwnLimit, Paid, Profile, SelfHosted};
use self::report::Outcome;
use self::run::{Bench, Mode, Timing, PAID_MODEL};
use crate::cli::Connections;
use crate::progress;
use crate::say;
use crate::stack::{self, BenchStack};

#[derive(Args, Debug)]
pub struct EconArgs {
    /// Every time (latencies, windows, backoffs, think time, SLO) is
    /// multiplied by this, so that a sweep finishes in minutes; figures are
    /// reported at full scale.
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// The latency users must get at P95 (seconds, full scale).
    #[arg(long, default_value_t = 2.0)]
    pub slo_s: f64,
    /// Mean think time between a user's answer and next request (seconds,
    /// full scale).
    #[arg(long, default_value_t = 30.0)]
    pub think_s: f64,
    /// Warm-up of each phase, not measured (seconds, full scale; a
    /// rate-limit window).
    #[arg(long, default_value_t = 60.0)]
    pub warmup_s: f64,
    /// Measured time of each phase (seconds, full scale).
    #[arg(long, default_value_t = 240.0)]
    pub measure_s: f64,
    /// A request not answered in this long is an error (seconds, full scale).
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Users in the table's phases; by default the most direct calls serve
    /// within the SLO (found by its sweep).
    #[arg(long)]
    pub users: Option<usize>,
    /// Users of each sweep's first phase.
    #[arg(long, default_value_t = 50)]
    pub start_users: usize,
    /// No sweep goes past this many users.
    #[arg(long, default_value_t = 3_200)]
    pub max_users: usize,
    /// Only these modes (direct, sluice, sluice-no-cache, self-hosted).
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<String>,
    /// Skip the sweeps: the table's phases only (needs --users).
    #[arg(long)]
    pub no_sweep: bool,
    /// Requests in the generated workload (enough for the largest phase).
    #[arg(long, default_value_t = 40_000)]
    pub requests: usize,
    /// The share of requests that may wait (background work, such as
    /// summaries and evaluations): sent to Sluice as `batch` jobs with a
    /// deadline, run in the background (not in the latencies).
    #[arg(long, default_value_t = 0.4)]
    pub deferrable_share: f64,
    /// How long a deferrable request may wait (seconds, full scale).
    #[arg(long, default_value_t = 3600.0)]
    pub deferrable_deadline_s: f64,
    /// How long the paid provider takes to finish a batch (seconds, full
    /// scale).
    #[arg(long, default_value_t = 600.0)]
    pub batch_turnaround_s: f64,
    /// The least time before its deadline a job needs to go into a
    /// provider batch (seconds, full scale); above --deferrable-deadline-s,
    /// deferrable work goes on flex instead.
    #[arg(long, default_value_t = 1800.0)]
    pub batch_min_deadline_s: f64,
    /// The share of requests that repeat an earlier one exactly.
    #[arg(long, default_value_t = 0.65)]
    pub repeat_share: f64,
    /// Of the repeats, the share that are paraphrases (which only a
    /// semantic cache could answer; the bench runs exact caching).
    #[arg(long, default_value_t = 0.0)]
    pub paraphrase_share: f64,
    #[arg(long, default_value_t = 1200.0)]
    pub mean_input_tokens: f64,
    #[arg(long, default_value_t = 300.0)]
    pub mean_output_tokens: f64,
    #[arg(long, default_value_t = 8)]
    pub features: usize,
    #[arg(long, default_value_t = 4)]
    pub tenants: usize,
    /// Replay these requests (JSONL, the OpenAI batch line format) instead
    /// of generating them.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The self-hosted server's price per hour, in dollars.
    #[arg(long, default_value_t = 4.0)]
    pub self_hosted_usd_per_hour: f64,
    /// Sequences the self-hosted server runs at once (its knee).
    #[arg(long, default_value_t = 8)]
    pub self_hosted_concurrency: usize,
    /// Also run the self-hosted mode with Sluice's calls to the server
    /// limited in each of these ways, per worker: a number is
    /// `max_concurrency`, fixed; `adaptive` is `latency_target_ms` at the
    /// SLO with `max_concurrency` at its default (the ceiling). Without
    /// --modes, only these run.
    #[arg(long, value_delimiter = ',')]
    pub self_hosted_limits: Vec<String>,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Where the tables and the charts go.
    #[arg(long, default_value = "target/bench-econ")]
    pub out: PathBuf,
    #[command(flatten)]
    pub conn: Connections,
}

impl EconArgs {
    fn own_limits(&self) -> anyhow::Result<Vec<OwnLimit>> {
        self.self_hosted_limits
            .iter()
            .map(|s| {
                OwnLimit::parse(s).with_context(|| {
                    format!("--self-hosted-limits: {s:?} is neither a number above 0 nor adaptive")
                })
            })
            .collect()
    }

    fn modes(&self) -> anyhow::Result<Vec<Mode>> {
        let limits = self.own_limits()?;
        let mut modes = match (self.modes.is_empty(), limits.is_empty()) {
            (true, true) => Mode::ALL.to_vec(),
            (true, false) => Vec::new(),
            (false, _) => self.named_modes()?,
        };
        modes.extend(limits.into_iter().map(Mode::SelfHosted));
        Ok(modes)
    }

    fn named_modes(&self) -> anyhow::Result<Vec<Mode>> {
        self.modes
            .iter()
            .map(|m| {
                Mode::ALL
                    .into_iter()
                    .find(|mode| mode.slug() == m)
                    .with_context(|| format!("--modes: unknown mode {m:?} (direct, sluice, sluice-no-cache, self-hosted)"))
            })
            .collect()
    }

    fn profile(&self) -> Profile {
        Profile {
            scale: self.scale,
            paid: Paid::default(),
            flex: Flex::default(),
            batches: crate::econ::profile::Batches {
                turnaround: Duration::from_secs_f64(self.batch_turnaround_s),
                min_deadline: Duration::from_secs_f64(self.batch_min_deadline_s),
                ..crate::econ::profile::Batches::default()
            },
            latency: Latency::default(),
            self_hosted: SelfHosted {
                micros_per_hour: (self.self_hosted_usd_per_hour * 1e6).round() as u64,
                concurrency: self.self_hosted_concurrency,
            },
        }
    }

    fn timing(&self, profile: &Profile) -> Timing {
        let at = |s: f64| profile.scaled(Duration::from_secs_f64(s));
        Timing {
            warmup: at(self.warmup_s),
            measure: at(self.measure_s),
            think: at(self.think_s),
            timeout: at(self.timeout_s),
            slo: at(self.slo_s),
            deferrable_deadline: at(self.deferrable_deadline_s),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.scale > 0.0 && self.scale <= 1.0,
            "--scale must be in (0, 1]"
        );
        anyhow::ensure!(
            self.no_sweep <= self.users.is_some(),
            "--no-sweep needs --users"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.repeat_share)
                && (0.0..=1.0).contains(&self.paraphrase_share)
                && (0.0..=1.0).contains(&self.deferrable_share),
            "--repeat-share, --paraphrase-share and --deferrable-share must be in [0, 1]"
        );
        anyhow::ensure!(
            (1.0..1e9).contains(&self.batch_turnaround_s)
                && (0.0..1e9).contains(&self.batch_min_deadline_s),
            "--batch-turnaround-s must be at least 1 and --batch-min-deadline-s at least 0 (seconds)"
        );
        Ok(())
    }
}

/// The workload and a line that describes it.
fn workload(args: &EconArgs) -> anyhow::Result<(Vec<workload::Request>, String)> {
    if let Some(path) = &args.replay {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let requests = workload::replay(&text, PAID_MODEL)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let line = format!(
            "{} requests replayed from {}",
            requests.len(),
            path.display()
        );
        return Ok((requests, line));
    }
    let spec = workload::Spec {
        requests: args.requests,
        mean_input_tokens: args.mean_input_tokens,
        mean_output_tokens: args.mean_output_tokens,
        repeat_share: args.repeat_share,
        paraphrase_share: args.paraphrase_share,
        features: args.features,
        tenants: args.tenants,
        model: PAID_MODEL.into(),
        seed: args.seed,
        deferrable_share: args.deferrable_share,
    };
    let line = format!(
        "generated (seed {}): input tokens mean {}, output mean {} (log-normal), {:.0}% repeats \
         ({:.0}% of them paraphrases), {:.0}% deferrable (a {} s deadline, in the background), \
         {} features sharing system prompts, {} tenants; users think {} s on average (full scale)",
        spec.seed,
        spec.mean_input_tokens,
        spec.mean_output_tokens,
        spec.repeat_share * 100.0,
        spec.paraphrase_share * 100.0,
        spec.deferrable_share * 100.0,
        args.deferrable_deadline_s,
        spec.features,
        spec.tenants,
        args.think_s,
    );
    Ok((workload::generate(&spec), line))
}

pub async fn run(args: EconArgs) -> anyhow::Result<()> {
    args.check()?;
    let modes = args.modes()?;
    let profile = args.profile();
    let timing = args.timing(&profile);
    let (requests, described) = workload(&args)?;
    let mut own_limits = vec![OwnLimit::Default];
    own_limits.extend(args.own_limits()?);
    let dir = std::env::temp_dir().join(format!("sluice-econ-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let paid_toml = dir.join("paid.toml");
    let own_toml = dir.join("own.toml");
    std::fs::write(&paid_toml, profile.paid_mock_toml())?;
    std::fs::write(&own_toml, profile.self_hosted_mock_toml())?;
    let flags = |toml: &PathBuf| vec!["--config".into(), toml.display().to_string()];
    // The paid provider is the stack's mock (provider `mock`), the
    // self-hosted server its backup (provider `own`).
    let stack = BenchStack::start(sluice_testkit::StackOptions {
        mock_args: flags(&paid_toml),
        provider_toml: profile.sluice_paid_provider_toml(),
        backup_mock: Some(flags(&own_toml)),
        extra_toml: format!(
            "{}[[models]]\nname = \"{PAID_MODEL}\"\nproviders = [\"mock\"]\n\n{}",
            profile.sluice_own_toml(&own_limits, "{backup_url}", timing.slo),
            profile.sluice_toml(PAID_MODEL)
        ),
        ..stack::options(&args.conn, args.workers)
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let bench = Bench::new(stack, profile, timing, requests);
    let outcome = measure(&bench, &args, &modes).await;
    let Bench { stack, profile, .. } = bench;
    stack.finish();
    let outcome = outcome?;

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let table = report::markdown(&outcome, &profile, &command, &described);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("econ.md"), &table)?;
    charts::write_all(&args.out, &outcome, &profile)?;
    say(&table);
    say(&format!(
        "bench: table, figures and charts written to {}",
        args.out.display()
    ));
    Ok(())
}

async fn measure(bench: &Bench, args: &EconArgs, modes: &[Mode]) -> anyhow::Result<Outcome> {
    let show = |p: &run::Point, pass: bool| {
        progress::line(&format!(
            "bench econ: {:<30} {:>5} users: P95 {:>6.0} ms, errors {:.2}%, {} requests, ${:.2}/1k{}{}",
            p.mode.name(),
            p.users,
            bench.profile.full_ms(p.measured.quantile(0.95)),
            p.measured.error_rate() * 100.0,
            p.measured.sent,
            p.cost_per_1k(),
            if pass { "" } else { "  (misses the SLO)" },
            if p.measured.exhausted { "  (workload exhausted: raise --requests)" } else { "" },
        ));
        if !p.found.is_empty() {
            progress::line(&format!(
                "bench econ:   limit found per worker: {:?}",
                p.found
            ));
        }
        if let Some(why) = p.measured.error_samples.first() {
            progress::line(&format!("bench econ:   first error: {why}"));
        }
    };
    let mut sweeps = Vec::new();
    if !args.no_sweep {
        for &mode in modes {
            let (max, points) = bench
                .sweep(mode, args.start_users, args.max_users, |p, pass| {
                    show(p, pass)
                })
                .await?;
            progress::line(&format!(
                "bench econ: {} serves at most {max} users within the SLO",
                mode.name()
            ));
            sweeps.push((mode, max, points));
        }
    }
    let users = match args.users {
        Some(n) => n,
        None => sweeps
            .iter()
            .find(|(m, ..)| *m == Mode::Direct)
            .map(|(_, max, _)| (*max).max(1))
            .unwrap_or(args.start_users),
    };
    let mut table = Vec::new();
    for &mode in modes {
        let p = bench.phase(mode, users).await?;
        show(&p, p.within(bench.timing.slo));
        table.push(p);
    }
    Ok(Outcome {
        table,
        sweeps,
        users,
        slo: bench.timing.slo,
    })
}
