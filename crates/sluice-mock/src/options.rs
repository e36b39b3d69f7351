//! How the mock behaves: latency, prefix cache, prices, rate limits,
//! faults, defaults and the optional API key.
//!
//! The latency model itself is in [`latency`](crate::latency), the cost
//! rule in [`pricing`](crate::pricing).

use std::fmt;
use std::time::Duration;

use crate::cache::PrefixCacheOptions;
use crate::faults::Faults;
use crate::limits::RateLimits;
use crate::pricing::PriceTable;
use crate::ratio::Ratio;

/// The mock's configuration. [`Default`] answers instantly, with 16
/// completion tokens and 16-dimensional embeddings, needs no key, caches
/// nothing, limits nothing and injects no fault. The bill is always kept,
/// at [`Price::DEFAULT`](crate::Price::DEFAULT) unless prices are given.
#[derive(Clone, PartialEq, Eq)]
pub struct MockOptions {
    /// Paid once per request, whatever its size (connection, scheduling).
    pub latency_fixed: Duration,
    /// Prefill cost per uncached prompt token.
    pub latency_per_prompt_token: Duration,
    /// Prefill cost per prompt token read from the prefix cache.
    pub latency_per_cached_prompt_token: Duration,
    /// Decode cost per completion token of the longest sequence.
    pub latency_per_completion_token: Duration,
    /// The latency varies by up to this fraction either way, uniformly.
    pub latency_jitter: Ratio,
    /// How much of an array call's prefill overlaps: 0 prefills the prompts
    /// one after the other, 1 all at once (see [`latency`](crate::latency)).
    pub batch_efficiency: Ratio,
    /// Seeds jitter and fault injection (see [`dice`](crate::dice)).
    pub seed: u64,
    /// Completion tokens when the request gives no `max_tokens`.
    pub default_max_tokens: u64,
    /// Embedding length when the request gives no `dimensions`.
    pub embedding_dims: usize,
    /// When set, every `/v1` and `/mock` request must carry
    /// `Authorization: Bearer <key>` (`x-api-key: <key>` on
    /// `/v1/messages`), or is answered 401.
    pub api_key: Option<String>,
    /// Requests served at once (their latency running); the rest wait in
    /// arrival order, as on a self-hosted inference server. `None` is no
    /// limit, as behind a hosted API.
    pub max_concurrency: Option<usize>,
    pub prefix_cache: PrefixCacheOptions,
    pub prices: PriceTable,
    pub rate_limits: RateLimits,
    pub faults: Faults,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency_fixed: Duration::ZERO,
            latency_per_prompt_token: Duration::ZERO,
            latency_per_cached_prompt_token: Duration::ZERO,
            latency_per_completion_token: Duration::ZERO,
            latency_jitter: Ratio::ZERO,
            batch_efficiency: Ratio::ZERO,
            seed: 0,
            default_max_tokens: 16,
            embedding_dims: 16,
            api_key: None,
            max_concurrency: None,
            prefix_cache: PrefixCacheOptions::default(),
            prices: PriceTable::default(),
            rate_limits: RateLimits::default(),
            faults: Faults::default(),
        }
    }
}

// Written by hand so that the key never reaches a log.
impl fmt::Debug for MockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockOptions")
            .field("latency_fixed", &self.latency_fixed)
            .field("latency_per_prompt_token", &self.latency_per_prompt_token)
            .field(
                "latency_per_cached_prompt_token",
                &self.latency_per_cached_prompt_token,
            )
            .field(
                "latency_per_completion_token",
                &self.latency_per_completion_token,
            )
            .field("latency_jitter", &self.latency_jitter)
            .field("batch_efficiency", &self.batch_efficiency)
            .field("seed", &self.seed)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("embedding_dims", &self.embedding_dims)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("max_concurrency", &self.max_concurrency)
            .field("prefix_cache", &self.prefix_cache)
            .field("prices", &self.prices)
            .field("rate_limits", &self.rate_limits)
            .field("faults", &self.faults)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Price;

    #[test]
    fn default_keeps_the_plain_behaviour() {
        let o = MockOptions::default();
        assert_eq!(o.latency(1_000, 1_000), Duration::ZERO);
        assert_eq!(o.default_max_tokens, 16);
        assert_eq!(o.embedding_dims, 16);
        assert_eq!(o.api_key, None);
        assert!(!o.prefix_cache.enabled);
        assert!(o.rate_limits.is_unlimited());
        assert_eq!(o.faults, Faults::default());
        assert!(o.latency_jitter.is_zero() && o.batch_efficiency.is_zero());
        assert_eq!(o.prices.price("any"), &Price::DEFAULT);
    }

    #[test]
    fn debug_redacts_the_key() {
        let o = MockOptions {
            api_key: Some("sk-secret".into()),
            ..MockOptions::default()
        };
        let shown = format!("{o:?}");
        assert!(!shown.contains("sk-secret"));
        assert!(shown.contains("<redacted>"));
    }
}
