//! The providers the economics bench runs against, in full-scale units,
//! and the scaled configuration the mock and Sluice get.
//!
//! Every duration is multiplied by the time scale `s` (the mock's latency
//! model, its rate-limit window, its prefix-cache TTL, the SDK's backoff,
//! Sluice's provider backoff, the users' think time and the SLO), so a run
//! at `s = 0.1` shows in a minute what takes ten at full scale. Rates per
//! window stay as they are: a limit of 450k tokens per minute becomes 450k
//! per 6 s. What is not scaled is the stack itself (HTTP, RabbitMQ, Redis,
//! the batcher's waits): at a small scale Sluice's own overhead weighs
//! `1/s` times more than it would at full scale, against Sluice.

use std::fmt::Write as _;
use std::time::Duration;

/// The paid provider: an OpenAI-like API, billed per token, rate-limited.
#[derive(Clone, Debug)]
pub struct Paid {
    /// Micro-dollars per million tokens.
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
}

impl Default for Paid {
    /// A mid-size model's prices ($1.50 / $0.75 cached / $8 per million
    /// tokens: $4.20 per 1,000 requests of 1,200 + 300 tokens, the
    /// published direct figure) and a second-tier account's limits.
    fn default() -> Self {
        Self {
            input: 1_500_000,
            cached_input: 750_000,
            output: 8_000_000,
            requests_per_minute: 5_000,
            tokens_per_minute: 450_000,
        }
    }
}

/// The paid provider's flex tier: the batch price (half), slower, and
/// sometimes refused (429 "resource unavailable").
#[derive(Clone, Debug)]
pub struct Flex {
    /// × the standard latency.
    pub slowdown: f64,
    /// The share of flex requests refused.
    pub unavailable: f64,
    /// Sluice's `[providers.flex]` at full scale: the least time a job
    /// needs before its deadline, the longest flex call, the time kept for
    /// a standard call.
    pub min_deadline: Duration,
    pub timeout: Duration,
    pub realtime_margin: Duration,
}

impl Default for Flex {
    fn default() -> Self {
        Self {
            slowdown: 3.0,
            unavailable: 0.05,
            min_deadline: Duration::from_secs(600),
            timeout: Duration::from_secs(900),
            realtime_margin: Duration::from_secs(180),
        }
    }
}

/// The paid provider's Batch API: the batch price (half), answered within
/// `turnaround`, outside the real-time rate limits.
#[derive(Clone, Debug)]
pub struct Batches {
    /// How long a batch takes at the provider.
    pub turnaround: Duration,
    /// Sluice's `[providers.batch]` at full scale: the least time a job
    /// needs before its deadline, the time kept for real time, how long a
    /// batch collects, how often it is polled.
    pub min_deadline: Duration,
    pub realtime_margin: Duration,
    pub collect: Duration,
    pub poll: Duration,
}

impl Default for Batches {
    fn default() -> Self {
        Self {
            turnaround: Duration::from_secs(600),
            min_deadline: Duration::from_secs(1_800),
            realtime_margin: Duration::from_secs(900),
            collect: Duration::from_secs(60),
            poll: Duration::from_secs(30),
        }
    }
}

/// The latency model both providers share, at full scale.
#[derive(Clone, Debug)]
pub struct Latency {
    pub fixed: Duration,
    pub per_prompt_token: Duration,
    pub per_cached_prompt_token: Duration,
    pub per_completion_token: Duration,
    /// ± this fraction, uniformly.
    pub jitter: f64,
}

impl Default for Latency {
    /// About 0.6 s for the mean request, 1.2 s at the 95th percentile of
    /// output lengths: the published direct P95.
    fn default() -> Self {
        Self {
            fixed: Duration::from_millis(150),
            per_prompt_token: Duration::from_micros(50),
            per_cached_prompt_token: Duration::from_micros(10),
            per_completion_token: Duration::from_micros(1_200),
            jitter: 0.1,
        }
    }
}

/// The self-hosted endpoint: a vLLM-like server on rented hardware, with
/// no per-token price and a fixed number of sequences served at once.
///
/// That number is the server's knee: up to it a call takes the latency
/// model's time whatever the load; past it calls wait in the server's
/// queue for a slot, so the latency a caller sees climbs in proportion to
/// the calls in flight while the throughput stays flat.
#[derive(Clone, Debug)]
pub struct SelfHosted {
    pub micros_per_hour: u64,
    pub concurrency: usize,
}

/// How Sluice limits its calls to the self-hosted server, per worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnLimit {
    /// Sluice's default provider setting: `max_concurrency` (64), fixed.
    Default,
    /// `max_concurrency = n`, fixed.
    Fixed(usize),
    /// `latency_target_ms` at the SLO and `max_concurrency` left at its
    /// default (the ceiling): the limit found by AIMD, nothing tuned.
    Adaptive,
}

impl OwnLimit {
    /// `"adaptive"` or a number of calls above zero.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "adaptive" => Some(Self::Adaptive),
            n => n.parse().ok().filter(|n| *n > 0).map(Self::Fixed),
        }
    }

    /// The provider in Sluice's configuration (each setting its own
    /// provider, all on the same server).
    pub fn provider(self) -> String {
        match self {
            Self::Default => "own".into(),
            Self::Fixed(n) => format!("own-fixed-{n}"),
            Self::Adaptive => "own-adaptive".into(),
        }
    }

    /// The model routed to [`provider`](Self::provider).
    pub fn model(self) -> String {
        format!("{}-model", self.provider())
    }

    /// What the setting is, for tables.
    pub fn describe(self) -> String {
        match self {
            Self::Default => "the default (64 per worker, fixed)".into(),
            Self::Fixed(n) => format!("{n} per worker, fixed"),
            Self::Adaptive => "adaptive (latency target = SLO)".into(),
        }
    }
}

/// The whole setting of a run.
#[derive(Clone, Debug)]
pub struct Profile {
    pub scale: f64,
    pub paid: Paid,
    pub flex: Flex,
    pub batches: Batches,
    pub latency: Latency,
    pub self_hosted: SelfHosted,
}

/// The prefix cache's TTL at full scale (OpenAI keeps prefixes 5–10 min).
const PREFIX_TTL: Duration = Duration::from_secs(300);
/// Sluice's first provider backoff at full scale (its default).
const PROVIDER_BACKOFF: Duration = Duration::from_millis(200);
/// Provider attempts per batch in the bench: enough to ride out a full
/// window of 429s instead of failing the jobs.
const PROVIDER_ATTEMPTS: u32 = 8;

impl Profile {
    /// `d` at the run's scale.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }

    /// Wall-clock time measured in the run, at full scale.
    pub fn full_scale(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }

    /// A time measured in the run, in milliseconds at full scale
    /// (`Duration::MAX`, "never answered", is infinite).
    pub fn full_ms(&self, d: Duration) -> f64 {
        if d == Duration::MAX {
            return f64::INFINITY;
        }
        d.as_secs_f64() / self.scale * 1e3
    }

    fn latency_toml(&self) -> String {
        let us = |d: Duration| self.scaled(d).as_micros();
        let l = &self.latency;
        format!(
            "[latency]\nfixed_ms = {}\nper_prompt_token_us = {}\nper_cached_prompt_token_us = {}\n\
             per_completion_token_us = {}\njitter = {}\n\n\
             [prefix_cache]\nenabled = true\nttl_secs = {}\n\n",
            self.scaled(l.fixed).as_millis(),
            us(l.per_prompt_token),
            us(l.per_cached_prompt_token),
            us(l.per_completion_token),
            l.jitter,
            self.scaled(PREFIX_TTL).as_secs().max(1),
        )
    }

    /// The paid provider's mock configuration.
    pub fn paid_mock_toml(&self) -> String {
        let p = &self.paid;
        let mut out = format!("seed = 1\n{}", self.latency_toml());
        let _ = write!(
            out,
            "[rate_limits]\nrequests_per_minute = {}\ntokens_per_minute = {}\nwindow_ms = {}\n\n\
             [flex]\nslowdown = {}\nunavailable = {}\n\n\
             [batch]\nturnaround_ms = {}\n\n\
             [prices.default]\ninput = {}\ncached_input = {}\noutput = {}\n",
            p.requests_per_minute,
            p.tokens_per_minute,
            self.scaled(Duration::from_secs(60)).as_millis().max(1),
            self.flex.slowdown,
            self.flex.unavailable,
            self.scaled(self.batches.turnaround).as_millis().max(1),
            p.input,
            p.cached_input,
            p.output,
        );
        out
    }

    /// The self-hosted server's mock configuration: no price, no rate
    /// limit, a fixed number of sequences at once.
    pub fn self_hosted_mock_toml(&self) -> String {
        format!(
            "seed = 2\nmax_concurrency = {}\n{}\
             [prices.default]\ninput = 0\ncached_input = 0\noutput = 0\n",
            self.self_hosted.concurrency,
            self.latency_toml(),
        )
    }

    /// The paid provider's entry in Sluice's configuration: its limits as
    /// the fleet-wide budget, at 95% (the headroom an operator leaves for
    /// estimates that differ from the provider's count), over the run's
    /// window.
    pub fn sluice_paid_provider_toml(&self) -> String {
        let p = &self.paid;
        let s = |d: Duration| self.scaled(d).as_secs().max(1);
        let margin = s(self.flex.realtime_margin);
        let b = &self.batches;
        let batch_margin = s(b.realtime_margin);
        let poll = s(b.poll);
        format!(
            "requests_per_minute = {}\ntokens_per_minute = {}\nlimits_window_ms = {}\n\
             [providers.flex]\nmin_deadline_s = {}\ntimeout_s = {}\nrealtime_margin_s = {margin}\n\
             [providers.batch]\nmin_deadline_s = {}\nrealtime_margin_s = {batch_margin}\n\
             collect_s = {}\npoll_s = {poll}\nlease_s = {}\n",
            p.requests_per_minute * 95 / 100,
            p.tokens_per_minute * 95 / 100,
            self.scaled(Duration::from_secs(60)).as_millis().max(60),
            s(self.flex.min_deadline).max(margin + 1),
            s(self.flex.timeout),
            s(b.min_deadline).max(batch_margin + 1),
            s(b.collect),
            poll * 4,
        )
    }

    /// What Sluice's configuration adds for the run: the provider backoff
    /// at the run's scale, attempts enough to queue through 429s, and the
    /// paid provider's prices (`model` as it bills it), so that Sluice's
    /// own figures (its usage by tier) are in dollars too.
    pub fn sluice_toml(&self, model: &str) -> String {
        let p = &self.paid;
        format!(
            "[[prices]]\nprovider = \"mock\"\nmodel = \"{model}\"\ninput = {}\ncached_input = {}\n\
             output = {}\n\n[worker]\nprovider_attempts = {PROVIDER_ATTEMPTS}\nprovider_backoff_ms = {}\n",
            p.input,
            p.cached_input,
            p.output,
            self.scaled(PROVIDER_BACKOFF).as_millis().max(1)
        )
    }

    /// The self-hosted server's providers and models in Sluice's
    /// configuration, one per setting of `limits`, every one at
    /// `server_url` (a template the stack fills); the adaptive one aims at
    /// `slo` (at the run's scale, as measured).
    pub fn sluice_own_toml(&self, limits: &[OwnLimit], server_url: &str, slo: Duration) -> String {
        let mut out = String::new();
        for &limit in limits {
            let setting = match limit {
                OwnLimit::Default => String::new(),
                OwnLimit::Fixed(n) => format!("max_concurrency = {n}\n"),
                OwnLimit::Adaptive => {
                    format!("latency_target_ms = {}\n", slo.as_millis().max(1))
                }
            };
            let _ = write!(
                out,
                "[[providers]]\nname = \"{p}\"\nkind = \"openai\"\nbase_url = \"{server_url}/v1\"\n\
                 {setting}\n[[models]]\nname = \"{m}\"\nproviders = [\"{p}\"]\n\n",
                p = limit.provider(),
                m = limit.model(),
            );
        }
        out
    }

    /// The self-hosted server's cost for `wall` of the run (at full scale).
    pub fn self_hosted_micros(&self, wall: Duration) -> u64 {
        let hours = self.full_scale(wall).as_secs_f64() / 3_600.0;
        (self.self_hosted.micros_per_hour as f64 * hours).round() as u64
    }

    /// One line that says what the run was set to.
    pub fn describe(&self) -> String {
        let p = &self.paid;
        let l = &self.latency;
        format!(
            "time scale {s} (every latency, window, backoff, think time and the SLO × {s}; \
             figures reported at full scale); paid provider ${:.2} / ${:.2} cached / ${:.2} per \
             million tokens in / in / out, {} RPM and {} TPM (Sluice's fleet-wide budget at 95% \
             of them), prefix cache on; latency {} ms + \
             {} µs per prompt token + {} µs per output token (± {:.0} %); provider batches at \
             half price, {} s turnaround, for jobs with {} s or more to their deadline; flex at \
             half price, {} × slower, {:.0} % refused (429), for jobs with {} s or more; \
             self-hosted ${:.2} per hour, {} sequences at once",
            p.input as f64 / 1e6,
            p.cached_input as f64 / 1e6,
            p.output as f64 / 1e6,
            p.requests_per_minute,
            p.tokens_per_minute,
            l.fixed.as_millis(),
            l.per_prompt_token.as_micros(),
            l.per_completion_token.as_micros(),
            l.jitter * 100.0,
            self.batches.turnaround.as_secs(),
            self.batches.min_deadline.as_secs(),
            self.flex.slowdown,
            self.flex.unavailable * 100.0,
            self.flex.min_deadline.as_secs(),
            self.self_hosted.micros_per_hour as f64 / 1e6,
            self.self_hosted.concurrency,
            s = self.scale,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(scale: f64) -> Profile {
        Profile {
            scale,
            paid: Paid::default(),
            flex: Flex::default(),
            batches: Batches::default(),
            latency: Latency::default(),
            self_hosted: SelfHosted {
                micros_per_hour: 4_000_000,
                concurrency: 8,
            },
        }
    }

    #[test]
    fn the_mock_configs_parse_and_carry_the_scale() {
        let p = profile(0.1);
        let paid = sluice_mock::MockOptions::from_toml(&p.paid_mock_toml()).unwrap();
        assert_eq!(paid.latency.fixed_ms, 15);
        assert_eq!(paid.latency.per_completion_token_us, 120);
        assert_eq!(paid.rate_limits.window(), Duration::from_secs(6));
        assert_eq!(paid.rate_limits.tokens_per_minute, Some(450_000));
        assert_eq!(paid.prices.price("any").output, 8_000_000);
        assert_eq!(paid.max_concurrency, None);

        let own = sluice_mock::MockOptions::from_toml(&p.self_hosted_mock_toml()).unwrap();
        assert_eq!(own.max_concurrency, std::num::NonZeroUsize::new(8));
        assert!(own.rate_limits.is_unlimited());
        assert_eq!(own.prices.price("any").output, 0);

        let sluice = p.sluice_paid_provider_toml();
        assert!(sluice.contains("tokens_per_minute = 427500"), "{sluice}");
        assert!(sluice.contains("limits_window_ms = 6000"), "{sluice}");
        assert!(sluice.contains("min_deadline_s = 60\n"), "{sluice}");
        assert!(sluice.contains("realtime_margin_s = 18\n"), "{sluice}");
    }

    #[test]
    fn the_published_request_costs_about_four_dollars_twenty_per_thousand() {
        let p = Paid::default();
        let per_request = (1_200 * p.input + 300 * p.output) / 1_000_000;
        assert_eq!(per_request * 1_000, 4_200_000);
    }

    #[test]
    fn each_self_hosted_setting_is_a_provider_of_its_own_on_the_one_server() {
        assert_eq!(OwnLimit::parse("8"), Some(OwnLimit::Fixed(8)));
        assert_eq!(OwnLimit::parse(" adaptive"), Some(OwnLimit::Adaptive));
        assert_eq!(OwnLimit::parse("0"), None);
        assert_eq!(OwnLimit::parse("fast"), None);
        let limits = [OwnLimit::Default, OwnLimit::Fixed(4), OwnLimit::Adaptive];
        let toml = profile(0.1).sluice_own_toml(&limits, "http://own", Duration::from_millis(200));
        #[derive(serde::Deserialize)]
        struct Part {
            providers: Vec<sluice_core::config::ProviderConfig>,
            models: Vec<sluice_core::config::ModelRoute>,
        }
        let part: Part = toml::from_str(&toml).unwrap();
        let p = &part.providers;
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.base_url.as_str() == "http://own/v1"));
        assert_eq!((p[0].max_concurrency, p[0].latency_target_ms), (64, None));
        assert_eq!((p[1].max_concurrency, p[1].latency_target_ms), (4, None));
        assert_eq!(
            (p[2].max_concurrency, p[2].latency_target_ms),
            (64, Some(200))
        );
        assert_eq!(part.models[1].name, "own-fixed-4-model");
        assert_eq!(part.models[1].providers, ["own-fixed-4"]);
    }

    #[test]
    fn self_hosted_costs_its_hours_at_full_scale() {
        // 360 s at scale 0.1 is an hour at full scale.
        assert_eq!(
            profile(0.1).self_hosted_micros(Duration::from_secs(360)),
            4_000_000
        );
    }
}
