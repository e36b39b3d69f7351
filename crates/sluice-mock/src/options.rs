//! How the mock behaves: latency, prefix cache, prices, rate limits,
//! faults, flex processing, provider batches, defaults and the optional
//! API key.
//!
//! [`MockOptions`] is declared once and read three ways: as the flags of
//! `sluice mock-llm` (it derives [`clap::Args`]; each field's doc comment
//! is its help and its `default_value` the default shown), as the TOML
//! file `sluice mock-llm --config FILE` (it derives
//! [`serde::Deserialize`]; a missing key keeps its [`Default`], which a
//! test keeps equal to the flags' defaults), and by the code. Invalid
//! values are refused by their types (a `NonZero…`, a [`Ratio`], an
//! [`ApiKey`]), so the flags and the file refuse the same mistakes.
//!
//! The file's keys are the fields; the tables are the groups of flags:
//!
//! ```toml
//! seed = 42
//! default_max_tokens = 16
//! embedding_dims = 16
//! # api_key = "sk-mock"
//! # Requests served at once; more wait their turn (a self-hosted server).
//! max_concurrency = 64
//!
//! [latency]
//! fixed_ms = 50
//! per_prompt_token_us = 20
//! per_cached_prompt_token_us = 2
//! per_completion_token_us = 2000
//! jitter = 0.1              # ± 10 %
//! batch_efficiency = 0.5    # array calls: prefill = 0.5 × sum + 0.5 × max
//!
//! [prefix_cache]
//! enabled = true
//! block_tokens = 64
//! max_entries = 10000
//! ttl_secs = 300
//!
//! [rate_limits]
//! requests_per_minute = 500
//! tokens_per_minute = 200000
//! window_ms = 60000         # the "minute" (benchmarks scale it)
//!
//! [faults]
//! error_rate = 0.01
//! stall_rate = 0.001
//! stall_ms = 120000
//!
//! # service_tier "flex" (see `flex`).
//! [flex]
//! slowdown = 3.0            # × the latency
//! unavailable = 0.05        # answered 429 resource_unavailable
//!
//! # OpenAI Batches and Anthropic Message Batches (see `batches`).
//! [batch]
//! turnaround_ms = 60000     # creation to completed
//! turnaround_jitter = 0.2   # ± 20 %
//! line_failure = 0.01       # lines answered 500
//! expire_after_ms = 86400000
//! hold = false              # or a share: batches that never progress
//! refuse = 0.0              # or true: creations refused
//! max_enqueued_tokens = 2000000
//!
//! # Micro-dollars per million tokens. Flex and batch prices default to
//! # half the standard price, each figure rounded up (see `pricing`).
//! [prices.default]
//! input = 1000000
//! cached_input = 100000
//! output = 4000000
//!
//! [prices.models."big-model"]
//! input = 3000000
//! cached_input = 300000
//! output = 15000000
//! batch = { input = 1000000, cached_input = 100000, output = 5000000 }
//! ```
//!
//! The latency model itself is in [`latency`](crate::latency), the cost
//! rule in [`pricing`](crate::pricing).

use std::fmt;
use std::num::NonZeroUsize;

use clap::Args;
use serde::Deserialize;

use crate::auth::ApiKey;
use crate::batches::BatchOptions;
use crate::cache::PrefixCacheOptions;
use crate::faults::Faults;
use crate::flex::FlexOptions;
use crate::limits::RateLimits;
use crate::pricing::PriceTable;
use crate::ratio::Ratio;

/// Completion tokens when a request gives no `max_tokens`.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// Embedding length when a request gives no `dimensions`.
const EMBEDDING_DIMS: NonZeroUsize = match NonZeroUsize::new(16) {
    Some(dims) => dims,
    None => panic!("16 is not zero"),
};

/// The mock's settings. [`Default`] answers instantly, with 16 completion
/// tokens and 16-dimensional embeddings, needs no key, caches nothing,
/// limits nothing and injects no fault; flex is three times slower and
/// always available, batches complete in a minute. The bill is always
/// kept, at [`Price::DEFAULT`](crate::Price::DEFAULT) (and half of it at
/// flex and batch) unless prices are given.
#[derive(Args, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MockOptions {
    /// Seeds latency jitter and fault injection, drawn per request in
    /// arrival order.
    #[arg(long, default_value_t)]
    pub seed: u64,
    /// Completion tokens when a request gives no max_tokens.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    pub default_max_tokens: u64,
    /// Embedding length when a request gives no dimensions.
    #[arg(long, default_value_t = EMBEDDING_DIMS)]
    pub embedding_dims: NonZeroUsize,
    /// Require this key: `Authorization: Bearer KEY` on /v1 and /mock, or
    /// `x-api-key: KEY` on /v1/messages. None is required when not given.
    #[arg(long, env = "SLUICE_MOCK_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// Requests served at once (their latency running); the rest wait their
    /// turn in arrival order, as on a self-hosted inference server.
    /// Unlimited when not given, as behind a hosted API.
    #[arg(long)]
    pub max_concurrency: Option<NonZeroUsize>,
    #[command(flatten)]
    pub latency: LatencyOptions,
    #[command(flatten)]
    pub prefix_cache: PrefixCacheOptions,
    #[command(flatten)]
    pub rate_limits: RateLimits,
    #[command(flatten)]
    pub faults: Faults,
    #[command(flatten)]
    pub flex: FlexOptions,
    #[command(flatten)]
    pub batch: BatchOptions,
    #[command(flatten)]
    pub prices: PriceTable,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            embedding_dims: EMBEDDING_DIMS,
            api_key: None,
            max_concurrency: None,
            latency: LatencyOptions::default(),
            prefix_cache: PrefixCacheOptions::default(),
            rate_limits: RateLimits::default(),
            faults: Faults::default(),
            flex: FlexOptions::default(),
            batch: BatchOptions::default(),
            prices: PriceTable::default(),
        }
    }
}

/// `[latency]` and the `--latency-*` flags: the inputs of the latency
/// model (see [`latency`](crate::latency)). [`Default`] is instant.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Latency")]
pub struct LatencyOptions {
    /// Fixed latency of every call, in milliseconds (connection,
    /// scheduling).
    #[arg(long = "latency-fixed-ms", value_name = "MS", default_value_t)]
    pub fixed_ms: u64,
    /// Prefill latency per uncached prompt token, in microseconds.
    #[arg(
        long = "latency-per-prompt-token-us",
        value_name = "US",
        default_value_t
    )]
    pub per_prompt_token_us: u64,
    /// Prefill latency per prompt token read from the prefix cache, in
    /// microseconds.
    #[arg(
        long = "latency-per-cached-prompt-token-us",
        value_name = "US",
        default_value_t
    )]
    pub per_cached_prompt_token_us: u64,
    /// Decode latency per generated token of the longest sequence, in
    /// microseconds.
    #[arg(
        long = "latency-per-completion-token-us",
        value_name = "US",
        default_value_t
    )]
    pub per_completion_token_us: u64,
    /// Latency varies uniformly by up to this fraction either way (0.1 is
    /// ±10 %), seeded by --seed.
    #[arg(long = "latency-jitter", value_name = "FRACTION", default_value_t)]
    pub jitter: Ratio,
    /// How much of an array call's prefill overlaps, E in [0, 1]:
    /// prefill = (1 − E) × sum + E × max over its prompts.
    #[arg(long, value_name = "FRACTION", default_value_t)]
    pub batch_efficiency: Ratio,
}

/// A settings file that cannot be read or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl MockOptions {
    /// The settings a TOML file gives, over the defaults. Unknown keys are
    /// errors, so that a typo does not silently leave a default in place.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError(format!("invalid mock config: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{Command, FromArgMatches};

    use super::*;
    use crate::pricing::{Price, Tier};
    use crate::ratio::Factor;

    /// The example in the module documentation.
    fn example() -> String {
        let doc = include_str!("options.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        doc[start..end]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap().trim_start())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn command() -> Command {
        MockOptions::augment_args(Command::new("mock-llm"))
    }

    fn flags(args: &[&str]) -> Result<MockOptions, clap::Error> {
        let argv = ["mock-llm"].iter().chain(args);
        MockOptions::from_arg_matches(&command().try_get_matches_from(argv)?)
    }

    #[test]
    fn default_keeps_the_plain_behaviour() {
        let o = MockOptions::default();
        assert_eq!(o.latency(1_000, 1_000), Duration::ZERO);
        assert_eq!(o.default_max_tokens, 16);
        assert_eq!(o.embedding_dims.get(), 16);
        assert_eq!(o.api_key, None);
        assert!(!o.prefix_cache.enabled);
        assert!(o.rate_limits.is_unlimited());
        assert_eq!(o.faults, Faults::default());
        assert!(o.latency.jitter.is_zero() && o.latency.batch_efficiency.is_zero());
        assert_eq!(o.prices.price("any"), &Price::DEFAULT);
        assert_eq!(o.prices.price_at("any", Tier::Batch), Price::DEFAULT.half());
        assert_eq!(o.flex.slowdown, Factor::whole(3));
        assert!(o.flex.unavailable.is_zero());
        assert_eq!(o.batch.turnaround_ms, 60_000);
        assert!(o.batch.hold.is_zero() && o.batch.refuse.is_zero());
        assert_eq!(o.batch.max_enqueued_tokens, None);
    }

    #[test]
    fn the_flags_the_file_and_the_code_share_their_defaults() {
        assert_eq!(flags(&[]).unwrap(), MockOptions::default());
        assert_eq!(MockOptions::from_toml("").unwrap(), MockOptions::default());
    }

    #[test]
    fn every_flag_has_its_help() {
        let command = command();
        let args: Vec<_> = command.get_arguments().collect();
        assert!(args.len() >= 33, "{} flags", args.len());
        for arg in args {
            assert!(
                arg.get_help().is_some(),
                "--{:?} has no help",
                arg.get_long()
            );
        }
    }

    #[test]
    fn the_documented_example_applies() {
        let o = MockOptions::from_toml(&example()).unwrap();
        assert_eq!(o.seed, 42);
        assert_eq!(o.latency.fixed_ms, 50);
        assert_eq!(o.latency.per_completion_token_us, 2_000);
        assert_eq!(o.latency.jitter, Ratio::percent(10));
        assert_eq!(o.latency.batch_efficiency, Ratio::percent(50));
        assert!(o.prefix_cache.enabled);
        assert_eq!(o.prefix_cache.ttl(), Duration::from_secs(300));
        assert_eq!(o.rate_limits.requests_per_minute, Some(500));
        assert_eq!(o.rate_limits.window(), Duration::from_secs(60));
        assert_eq!(o.max_concurrency, NonZeroUsize::new(64));
        assert_eq!(o.faults.error_rate, Ratio::percent(1));
        assert_eq!(o.faults.stall(), Duration::from_secs(120));
        assert_eq!(o.prices.price("big-model").output, 15_000_000);
        assert_eq!(
            o.prices.price_at("big-model", Tier::Batch).output,
            5_000_000
        );
        assert_eq!(o.prices.price_at("big-model", Tier::Flex).output, 7_500_000);
        assert_eq!(o.prices.price("other"), &Price::DEFAULT);
        assert_eq!(o.api_key, None);
        assert_eq!(o.flex.slowdown, Factor::whole(3));
        assert_eq!(o.flex.unavailable, Ratio::percent(5));
        assert_eq!(o.batch.turnaround_jitter, Ratio::percent(20));
        assert_eq!(o.batch.line_failure, Ratio::percent(1));
        assert!(o.batch.hold.is_zero());
        assert_eq!(o.batch.max_enqueued_tokens, Some(2_000_000));
    }

    #[test]
    fn the_tier_flags_set_what_their_keys_set() {
        let flags = flags(&[
            "--flex-slowdown=2.5",
            "--flex-unavailable=0.1",
            "--batch-turnaround-ms=500",
            "--batch-turnaround-jitter=0.5",
            "--batch-line-failure=0.2",
            "--batch-expire-after-ms=9000",
            "--batch-hold",
            "--batch-refuse=0.25",
            "--batch-max-enqueued-tokens=1000",
            "--batch-price=m=1:2:3",
            "--flex-price=default=4:5:6",
        ])
        .unwrap();
        let file = MockOptions::from_toml(
            "[flex]\nslowdown = 2.5\nunavailable = 0.1\n\
             [batch]\nturnaround_ms = 500\nturnaround_jitter = 0.5\n\
             line_failure = 0.2\nexpire_after_ms = 9000\nhold = true\n\
             refuse = 0.25\nmax_enqueued_tokens = 1000\n\
             [prices.default]\ninput = 1000000\ncached_input = 100000\n\
             output = 4000000\nflex = { input = 4, cached_input = 5, output = 6 }\n\
             [prices.models.m]\ninput = 1000000\ncached_input = 100000\n\
             output = 4000000\nflex = { input = 4, cached_input = 5, output = 6 }\n\
             batch = { input = 1, cached_input = 2, output = 3 }\n",
        )
        .unwrap();
        assert_eq!(flags, file);
        assert_eq!(flags.batch.hold, Ratio::ONE);
        assert!(self::flags(&["--flex-slowdown=-1"]).is_err());
        assert!(self::flags(&["--batch-hold=2"]).is_err());
    }

    #[test]
    fn a_partial_table_keeps_the_other_defaults() {
        let o = MockOptions::from_toml("[prefix_cache]\nenabled = true").unwrap();
        assert!(o.prefix_cache.enabled);
        assert_eq!(o.prefix_cache.block_tokens.get(), 64);
        assert_eq!(o.prefix_cache.max_entries.get(), 10_000);
    }

    #[test]
    fn the_file_and_the_flags_refuse_the_same_mistakes() {
        for (key, flag) in [
            (
                "[prefix_cache]\nblock_tokens = 0",
                "--prefix-cache-block-tokens=0",
            ),
            (
                "[prefix_cache]\nmax_entries = 0",
                "--prefix-cache-max-entries=0",
            ),
            ("embedding_dims = 0", "--embedding-dims=0"),
            ("max_concurrency = 0", "--max-concurrency=0"),
            ("[rate_limits]\nwindow_ms = 0", "--rate-window-ms=0"),
            ("api_key = \" \"", "--api-key= "),
            ("[latency]\njitter = 1.5", "--latency-jitter=1.5"),
            ("[faults]\nerror_rate = -0.1", "--error-rate=-0.1"),
        ] {
            assert!(MockOptions::from_toml(key).is_err(), "{key}");
            assert!(flags(&[flag]).is_err(), "{flag}");
        }
        for bad in [
            "sede = 1",
            "[prices.default]\ninput = 1",
            "[prices.models.m]\ninput = -1\ncached_input = 0\noutput = 0",
        ] {
            assert!(MockOptions::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let o = MockOptions {
            api_key: "sk-secret".parse().ok(),
            ..MockOptions::default()
        };
        assert!(o.api_key.is_some());
        let shown = format!("{o:?}");
        assert!(!shown.contains("sk-secret"));
        assert!(shown.contains("<redacted>"));
    }
}
