//! The mock's settings as a TOML file (`sluice mock-llm --config FILE`),
//! and as the overrides the command line builds. Every field is optional:
//! [`MockConfig::apply`] changes only what is set, so a file can be
//! applied over the defaults and flags over the file.
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
//! # Micro-dollars per million tokens.
//! [prices.default]
//! input = 1000000
//! cached_input = 100000
//! output = 4000000
//!
//! [prices.models."big-model"]
//! input = 3000000
//! cached_input = 300000
//! output = 15000000
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::options::MockOptions;
use crate::pricing::Price;
use crate::ratio::Ratio;

/// The whole file.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    pub seed: Option<u64>,
    pub default_max_tokens: Option<u64>,
    pub embedding_dims: Option<usize>,
    pub api_key: Option<String>,
    pub max_concurrency: Option<usize>,
    pub latency: LatencyConfig,
    pub prefix_cache: PrefixCacheConfig,
    pub rate_limits: RateLimitConfig,
    pub faults: FaultConfig,
    pub prices: PriceConfig,
}

/// `[latency]`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub fixed_ms: Option<u64>,
    pub per_prompt_token_us: Option<u64>,
    pub per_cached_prompt_token_us: Option<u64>,
    pub per_completion_token_us: Option<u64>,
    pub jitter: Option<Ratio>,
    pub batch_efficiency: Option<Ratio>,
}

/// `[prefix_cache]`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixCacheConfig {
    pub enabled: Option<bool>,
    pub block_tokens: Option<u64>,
    pub max_entries: Option<usize>,
    pub ttl_secs: Option<u64>,
}

/// `[rate_limits]`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub window_ms: Option<u64>,
}

/// `[faults]`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub error_rate: Option<Ratio>,
    pub stall_rate: Option<Ratio>,
    pub stall_ms: Option<u64>,
}

/// `[prices]`: the default entry and prices by model, in micro-dollars
/// per million tokens. Models listed replace the same models set earlier;
/// others are kept.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PriceConfig {
    pub default: Option<Price>,
    pub models: BTreeMap<String, Price>,
}

/// A configuration that cannot be read or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl MockConfig {
    /// Parses a TOML file's text; unknown keys are errors, so that a typo
    /// does not silently leave a default in place.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError(format!("invalid mock config: {err}")))
    }

    /// Sets on `options` every field that is set here, after checking that
    /// the values make sense.
    pub fn apply(&self, options: &mut MockOptions) -> Result<(), ConfigError> {
        self.check()?;
        set(&mut options.seed, self.seed);
        set(&mut options.default_max_tokens, self.default_max_tokens);
        set(&mut options.embedding_dims, self.embedding_dims);
        if let Some(key) = &self.api_key {
            options.api_key = Some(key.clone());
        }
        if self.max_concurrency.is_some() {
            options.max_concurrency = self.max_concurrency;
        }

        let l = &self.latency;
        set(
            &mut options.latency_fixed,
            l.fixed_ms.map(Duration::from_millis),
        );
        set(
            &mut options.latency_per_prompt_token,
            l.per_prompt_token_us.map(Duration::from_micros),
        );
        set(
            &mut options.latency_per_cached_prompt_token,
            l.per_cached_prompt_token_us.map(Duration::from_micros),
        );
        set(
            &mut options.latency_per_completion_token,
            l.per_completion_token_us.map(Duration::from_micros),
        );
        set(&mut options.latency_jitter, l.jitter);
        set(&mut options.batch_efficiency, l.batch_efficiency);

        let c = &self.prefix_cache;
        let cache = &mut options.prefix_cache;
        set(&mut cache.enabled, c.enabled);
        set(&mut cache.block_tokens, c.block_tokens);
        set(&mut cache.max_entries, c.max_entries);
        set(&mut cache.ttl, c.ttl_secs.map(Duration::from_secs));

        let r = &self.rate_limits;
        if r.requests_per_minute.is_some() {
            options.rate_limits.requests_per_minute = r.requests_per_minute;
        }
        if r.tokens_per_minute.is_some() {
            options.rate_limits.tokens_per_minute = r.tokens_per_minute;
        }
        if let Some(ms) = r.window_ms {
            options.rate_limits.window = Some(Duration::from_millis(ms));
        }

        let f = &self.faults;
        set(&mut options.faults.error_rate, f.error_rate);
        set(&mut options.faults.stall_rate, f.stall_rate);
        set(
            &mut options.faults.stall,
            f.stall_ms.map(Duration::from_millis),
        );

        set(&mut options.prices.default, self.prices.default);
        for (model, price) in &self.prices.models {
            options.prices.models.insert(model.clone(), *price);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("prefix_cache.block_tokens", self.prefix_cache.block_tokens),
            (
                "prefix_cache.max_entries",
                self.prefix_cache.max_entries.map(|n| n as u64),
            ),
            ("embedding_dims", self.embedding_dims.map(|n| n as u64)),
            ("max_concurrency", self.max_concurrency.map(|n| n as u64)),
            ("rate_limits.window_ms", self.rate_limits.window_ms),
        ];
        for (name, value) in positive {
            if value == Some(0) {
                return Err(ConfigError(format!("{name} must be at least 1")));
            }
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError("api_key must not be empty".to_owned()));
        }
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTable;

    /// The example in the module documentation.
    fn example() -> String {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        doc[start..end]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap().trim_start())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_example_applies() {
        let config = MockConfig::from_toml(&example()).unwrap();
        let mut o = MockOptions::default();
        config.apply(&mut o).unwrap();
        assert_eq!(o.seed, 42);
        assert_eq!(o.latency_fixed, Duration::from_millis(50));
        assert_eq!(o.latency_per_completion_token, Duration::from_millis(2));
        assert_eq!(o.latency_jitter, Ratio::percent(10));
        assert_eq!(o.batch_efficiency, Ratio::percent(50));
        assert!(o.prefix_cache.enabled);
        assert_eq!(o.prefix_cache.ttl, Duration::from_secs(300));
        assert_eq!(o.rate_limits.requests_per_minute, Some(500));
        assert_eq!(o.rate_limits.window(), Duration::from_secs(60));
        assert_eq!(o.max_concurrency, Some(64));
        assert_eq!(o.faults.error_rate, Ratio::percent(1));
        assert_eq!(o.faults.stall, Duration::from_secs(120));
        assert_eq!(o.prices.price("big-model").output, 15_000_000);
        assert_eq!(o.prices.price("other"), &Price::DEFAULT);
        assert_eq!(o.api_key, None);
    }

    #[test]
    fn empty_config_changes_nothing_and_later_layers_win() {
        let mut o = MockOptions::default();
        MockConfig::from_toml("").unwrap().apply(&mut o).unwrap();
        assert_eq!(o, MockOptions::default());

        let file = MockConfig::from_toml("seed = 1\n[latency]\nfixed_ms = 5").unwrap();
        let flags = MockConfig {
            seed: Some(2),
            ..MockConfig::default()
        };
        file.apply(&mut o).unwrap();
        flags.apply(&mut o).unwrap();
        assert_eq!((o.seed, o.latency_fixed), (2, Duration::from_millis(5)));
        assert_eq!(o.prices, PriceTable::default());
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            "sede = 1",
            "[latency]\njitter = 1.5",
            "[prices.default]\ninput = 1",
            "[prices.models.m]\ninput = -1\ncached_input = 0\noutput = 0",
        ] {
            assert!(MockConfig::from_toml(bad).is_err(), "{bad}");
        }
        let zero = MockConfig::from_toml("[prefix_cache]\nblock_tokens = 0").unwrap();
        assert!(zero.apply(&mut MockOptions::default()).is_err());
    }
}
