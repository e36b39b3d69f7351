//! What provider calls cost, in integer micro-dollars.
//!
//! Prices are micro-dollars per million tokens. One provider call costs
//!
//! ```text
//! (uncached × input + cached × cached_input + completion × output
//!  + written × cache_write) / 1_000_000, rounded half up, once per call
//! ```
//!
//! where `cached` prompt tokens were read from the provider's prompt cache,
//! `written` were written to it (Anthropic), `uncached` is the rest of the
//! prompt, and `cache_write` is 1.25 × input unless the table says
//! otherwise. This is how the providers we model bill: per request, rounded
//! once. A call that served several jobs (an array call) costs what the
//! call cost, split across its jobs by each job's unrounded share
//! ([`split_cost`]), so the jobs' costs sum exactly to the call's.
//!
//! Each tier a provider sells has its own [`Price`] ([`Prices`]): flex and
//! provider-batch calls are priced by the table's `flex` and `batch`
//! lines, and where the table gives none, at half the standard price, each
//! figure halved and rounded up (`(x + 1) / 2`): the rule the mock
//! provider bills by too.
//!
//! [`split_cost`]: Price::split_cost

use serde::Deserialize;

use crate::split::split_proportional;
use crate::Usage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens written to the cache; 1.25 × `input` if absent.
    #[serde(default)]
    pub cache_write: Option<u64>,
}

impl Price {
    /// Half of this price, each figure rounded up: a tier's default.
    pub fn half(&self) -> Price {
        let half = |x: u64| x.div_ceil(2);
        Price {
            input: half(self.input),
            cached_input: half(self.cached_input),
            output: half(self.output),
            cache_write: self.cache_write.map(half),
        }
    }
}

/// What one provider charges for one model, on each tier it sells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prices {
    pub standard: Price,
    pub flex: Price,
    pub batch: Price,
}

impl Prices {
    /// `standard`, with the other tiers at the prices given or at half.
    pub fn new(standard: Price, flex: Option<Price>, batch: Option<Price>) -> Self {
        Self {
            standard,
            flex: flex.unwrap_or_else(|| standard.half()),
            batch: batch.unwrap_or_else(|| standard.half()),
        }
    }

    /// The price of a call on `tier` (a cache hit is priced as standard:
    /// it costs nothing of its own, but saves its source call's price).
    pub fn at(&self, tier: crate::Tier) -> &Price {
        match tier {
            crate::Tier::Flex => &self.flex,
            crate::Tier::ProviderBatch => &self.batch,
            crate::Tier::Realtime | crate::Tier::Cache => &self.standard,
        }
    }
}

/// Quarter micro-dollar units keep 1.25 × input exact.
const QUARTERS: u128 = 4;
const PER_MILLION: u128 = 1_000_000;

impl Price {
    /// The call's cost before rounding, in quarter-µ$ × 10⁶ units.
    fn numerator(&self, usage: &Usage) -> u128 {
        let uncached = usage
            .prompt_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let mul = |tokens: u64, price: u128| u128::from(tokens).saturating_mul(price);
        let write_quarters = match self.cache_write {
            Some(price) => QUARTERS * u128::from(price),
            None => 5 * u128::from(self.input),
        };
        (QUARTERS
            * (mul(uncached, u128::from(self.input))
                + mul(usage.cached_tokens, u128::from(self.cached_input))
                + mul(usage.completion_tokens, u128::from(self.output))))
        .saturating_add(mul(usage.cache_write_tokens, write_quarters))
    }

    /// What one call with this usage costs, in µ$, rounded half up.
    pub fn call_cost(&self, usage: &Usage) -> u64 {
        let denominator = QUARTERS * PER_MILLION;
        let rounded = (self.numerator(usage) + denominator / 2) / denominator;
        u64::try_from(rounded).unwrap_or(u64::MAX)
    }

    /// The cost of one call that served several jobs, split across them by
    /// each job's unrounded share: the parts sum to [`Price::call_cost`] of
    /// the call's total usage.
    pub fn split_cost(&self, total: &Usage, jobs: &[Usage]) -> Vec<u64> {
        let weights: Vec<u64> = jobs
            .iter()
            .map(|u| u64::try_from(self.numerator(u)).unwrap_or(u64::MAX))
            .collect();
        split_proportional(self.call_cost(total), &weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Price = Price {
        input: 1_000_000,
        cached_input: 100_000,
        output: 4_000_000,
        cache_write: None,
    };

    fn usage(prompt: u64, cached: u64, written: u64, completion: u64) -> Usage {
        let mut u = Usage::new(prompt, completion, cached);
        u.cache_write_tokens = written;
        u
    }

    #[test]
    fn a_call_costs_its_tokens_at_their_prices_rounded_half_up_once() {
        // 1000 × $1/M + 10 × $4/M = 1000 + 40 µ$.
        assert_eq!(PRICE.call_cost(&usage(1000, 0, 0, 10)), 1040);
        // Cached tokens at the cached price: 900 × 1 + 100 × 0.1 = 910.
        assert_eq!(PRICE.call_cost(&usage(1000, 100, 0, 0)), 910);
        // Cache writes at 1.25 × input: 800 × 1 + 200 × 1.25 = 1050.
        assert_eq!(PRICE.call_cost(&usage(1000, 0, 200, 0)), 1050);
        // Half a micro-dollar rounds up; less rounds down.
        let odd = Price {
            input: 500_000,
            ..PRICE
        };
        assert_eq!(odd.call_cost(&usage(1, 0, 0, 0)), 1);
        assert_eq!(odd.call_cost(&usage(0, 0, 0, 0)), 0);
        let tiny = Price {
            input: 499_999,
            ..PRICE
        };
        assert_eq!(tiny.call_cost(&usage(1, 0, 0, 0)), 0);
    }

    #[test]
    fn tiers_default_to_half_the_standard_price_rounded_up() {
        let odd = Price {
            input: 150_001,
            cached_input: 75_000,
            output: 600_000,
            cache_write: Some(3),
        };
        let prices = Prices::new(odd, None, None);
        let half = Price {
            input: 75_001,
            cached_input: 37_500,
            output: 300_000,
            cache_write: Some(2),
        };
        assert_eq!(prices.flex, half);
        assert_eq!(prices.batch, half);
        let given = Prices::new(odd, Some(PRICE), None);
        assert_eq!(*given.at(crate::Tier::Flex), PRICE);
        assert_eq!(*given.at(crate::Tier::Realtime), odd);
        assert_eq!(*given.at(crate::Tier::ProviderBatch), half);
    }

    #[test]
    fn a_shared_call_splits_exactly() {
        let jobs = [usage(3, 0, 0, 1), usage(5, 0, 0, 1), usage(7, 0, 0, 2)];
        let total = usage(15, 0, 0, 4);
        let parts = PRICE.split_cost(&total, &jobs);
        assert_eq!(parts.iter().sum::<u64>(), PRICE.call_cost(&total));
        assert!(parts[2] >= parts[1] && parts[1] >= parts[0]);
    }
}
