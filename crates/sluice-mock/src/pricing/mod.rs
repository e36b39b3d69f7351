//! The price table and the cost of one request, in integer micro-dollars.
//!
//! # The cost rule
//!
//! Prices are micro-dollars (µ$, a millionth of a dollar) per million
//! tokens. For one request, with `prompt` prompt tokens of which `cached`
//! were read from the prefix cache and `written` were written to it
//! (Anthropic's `cache_creation_input_tokens`; zero on the OpenAI routes),
//! `uncached = prompt − cached − written`, and `completion` output tokens:
//!
//! ```text
//! N    = 4 × (uncached × input + cached × cached_input + completion × output)
//!      + 5 × written × input                       (cache writes cost 1.25 × input)
//! cost = floor((N + 2_000_000) / 4_000_000)        (µ$, rounded half up, once)
//! ```
//!
//! That is `(uncached × input + cached × cached_input + completion × output`
//! `+ 1.25 × written × input) / 1_000_000` rounded half up, computed in
//! 128-bit integers so that nothing is lost before the single rounding.
//! The bill sums these per-request costs; recomputing each request's cost
//! from its reported usage and this table gives the bill exactly.
//!
//! # Prices by tier
//!
//! A request is served on one [`Tier`]: `standard` (real time), `flex`
//! (OpenAI's `service_tier: "flex"`) or `batch` (a line of a provider
//! batch). Each model has a standard price and may have a flex and a batch
//! price ([`ModelPrice`]); a tier price not given is **half the standard
//! price, each of its three figures rounded up**:
//!
//! ```text
//! half(x) = (x + 1) / 2        (integer division: ⌈x / 2⌉)
//! ```
//!
//! so a standard price of `1_000_000:100_000:4_000_000` gives
//! `500_000:50_000:2_000_000` at flex and batch, and `3:1:5` gives `2:1:3`.
//! The cost rule above then applies unchanged with the tier's price.
//! Sluice computes its own estimates with this very rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod table;

pub use table::{parse_model_price, PriceTable};

/// Tokens per price unit: prices are per million tokens.
const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// Cache writes cost `CACHE_WRITE_NUM / CACHE_WRITE_DEN` (1.25) times the
/// input price, as Anthropic charges for its five-minute cache.
pub const CACHE_WRITE_NUM: u64 = 5;
pub const CACHE_WRITE_DEN: u64 = 4;

/// What one model costs, in micro-dollars per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: u64,
    /// Prompt tokens read from the prefix cache.
    pub cached_input: u64,
    /// Completion (output) tokens.
    pub output: u64,
}

impl Price {
    /// The price of models missing from the table: $1 per million input
    /// tokens, $0.10 per million cached input tokens, $4 per million output
    /// tokens (a small model's order of magnitude, with round numbers).
    pub const DEFAULT: Price = Price {
        input: 1_000_000,
        cached_input: 100_000,
        output: 4_000_000,
    };

    /// The cost of `usage` at this price, in micro-dollars, by the rule in
    /// the [module documentation](self).
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let uncached = usage
            .prompt_tokens
            .saturating_sub(usage.cached_tokens)
            .saturating_sub(usage.cache_write_tokens);
        // Exact for any realistic figures; saturates rather than wraps at
        // absurd ones (2^64 tokens at 2^64 µ$).
        let mul = |tokens: u64, price: u64| u128::from(tokens).saturating_mul(u128::from(price));
        let den = u128::from(CACHE_WRITE_DEN);
        let plain = mul(uncached, self.input)
            .saturating_add(mul(usage.cached_tokens, self.cached_input))
            .saturating_add(mul(usage.completion_tokens, self.output));
        let written =
            u128::from(CACHE_WRITE_NUM).saturating_mul(mul(usage.cache_write_tokens, self.input));
        let numerator = den.saturating_mul(plain).saturating_add(written);
        let denominator = den * TOKENS_PER_PRICE_UNIT;
        let rounded = numerator.saturating_add(denominator / 2) / denominator;
        u64::try_from(rounded).unwrap_or(u64::MAX)
    }
}

impl Default for Price {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Price {
    /// Half this price, each figure rounded up: the flex and batch price
    /// when none is given (see the [module documentation](self)).
    pub const fn half(&self) -> Price {
        const fn half(x: u64) -> u64 {
            x / 2 + x % 2
        }
        Price {
            input: half(self.input),
            cached_input: half(self.cached_input),
            output: half(self.output),
        }
    }
}

/// How a request is served, and so which of its model's prices applies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Real time, at the standard price.
    Standard,
    /// OpenAI's flex processing: slower, sometimes unavailable, cheaper.
    Flex,
    /// A line of a provider batch (OpenAI Batches, Anthropic Message
    /// Batches).
    Batch,
}

impl Tier {
    /// Every tier, in the order the bill lists them.
    pub const ALL: [Tier; 3] = [Tier::Standard, Tier::Flex, Tier::Batch];

    /// The tier's name in the bill: `standard`, `flex` or `batch`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Batch => "batch",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model's prices: the standard price, and the flex and batch prices
/// when they are not half of it.
///
/// In a file, the standard price's figures are the table's own keys and
/// the others are optional sub-tables:
///
/// ```toml
/// [prices.models."big"]
/// input = 3000000
/// cached_input = 300000
/// output = 15000000
/// batch = { input = 1000000, cached_input = 100000, output = 5000000 }
/// ```
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(from = "ModelPriceFields", into = "ModelPriceFields")]
pub struct ModelPrice {
    pub standard: Price,
    /// Half the standard price when not given.
    pub flex: Option<Price>,
    /// Half the standard price when not given.
    pub batch: Option<Price>,
}

impl ModelPrice {
    /// The price of models missing from the table: [`Price::DEFAULT`], and
    /// half of it at flex and batch.
    pub const DEFAULT: ModelPrice = ModelPrice::standard(Price::DEFAULT);

    /// `standard`, with the tier prices following it (half of it).
    pub const fn standard(standard: Price) -> Self {
        Self {
            standard,
            flex: None,
            batch: None,
        }
    }

    /// The price on `tier`, by the rule in the [module documentation](self).
    pub fn at(&self, tier: Tier) -> Price {
        match tier {
            Tier::Standard => self.standard,
            Tier::Flex => self.flex.unwrap_or(self.standard.half()),
            Tier::Batch => self.batch.unwrap_or(self.standard.half()),
        }
    }

    /// The same prices with the one of `tier` set to `price`.
    pub fn with(mut self, tier: Tier, price: Price) -> Self {
        match tier {
            Tier::Standard => self.standard = price,
            Tier::Flex => self.flex = Some(price),
            Tier::Batch => self.batch = Some(price),
        }
        self
    }
}

impl Default for ModelPrice {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// [`ModelPrice`] as a file writes it: the standard figures flat, the
/// tiers as optional sub-tables.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPriceFields {
    input: u64,
    cached_input: u64,
    output: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flex: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<Price>,
}

impl From<ModelPriceFields> for ModelPrice {
    fn from(fields: ModelPriceFields) -> Self {
        Self {
            standard: Price {
                input: fields.input,
                cached_input: fields.cached_input,
                output: fields.output,
            },
            flex: fields.flex,
            batch: fields.batch,
        }
    }
}

impl From<ModelPrice> for ModelPriceFields {
    fn from(price: ModelPrice) -> Self {
        Self {
            input: price.standard.input,
            cached_input: price.standard.cached_input,
            output: price.standard.output,
            flex: price.flex,
            batch: price.batch,
        }
    }
}

/// The tokens of one request that the price applies to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached or not (OpenAI's `prompt_tokens`).
    pub prompt_tokens: u64,
    /// Of those, read from the prefix cache.
    pub cached_tokens: u64,
    /// Of those, written to the prefix cache at the cache-write price
    /// (Anthropic's explicit `cache_control` only).
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
}

/// `"INPUT:CACHED_INPUT:OUTPUT"`, three integers, as the command line
/// takes a price.
impl FromStr for Price {
    type Err = ParsePriceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || ParsePriceError(text.to_owned());
        let mut parts = text.split(':').map(|p| p.trim().parse::<u64>());
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(input)), Some(Ok(cached_input)), Some(Ok(output)), None) => Ok(Price {
                input,
                cached_input,
                output,
            }),
            _ => Err(fail()),
        }
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.input, self.cached_input, self.output)
    }
}

/// Why a text is not a price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePriceError(String);

impl fmt::Display for ParsePriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a price: expected [MODEL=]INPUT:CACHED_INPUT:OUTPUT in \
             micro-dollars per million tokens, e.g. 1000000:100000:4000000",
            self.0
        )
    }
}

impl std::error::Error for ParsePriceError {}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Price = Price {
        input: 3_000_000,
        cached_input: 300_000,
        output: 15_000_000,
    };

    fn usage(prompt: u64, cached: u64, written: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            cached_tokens: cached,
            cache_write_tokens: written,
            completion_tokens: completion,
        }
    }

    #[test]
    fn plain_cost_is_tokens_times_price_over_a_million() {
        // 1000 × 3 + 100 × 15 = 4500 µ$
        assert_eq!(P.cost_micros(&usage(1_000, 0, 0, 100)), 4_500);
        assert_eq!(P.cost_micros(&Usage::default()), 0);
    }

    #[test]
    fn cached_and_written_tokens_use_their_prices() {
        // 200 uncached × 3 + 800 cached × 0.3 + 10 × 15 = 600 + 240 + 150
        assert_eq!(P.cost_micros(&usage(1_000, 800, 0, 10)), 990);
        // 200 uncached × 3 + 800 written × 3.75 + 10 × 15 = 600 + 3000 + 150
        assert_eq!(P.cost_micros(&usage(1_000, 0, 800, 10)), 3_750);
    }

    #[test]
    fn rounds_half_up_once_on_the_total() {
        let one = Price {
            input: 1,
            cached_input: 0,
            output: 0,
        };
        assert_eq!(one.cost_micros(&usage(499_999, 0, 0, 0)), 0);
        assert_eq!(one.cost_micros(&usage(500_000, 0, 0, 0)), 1);
        assert_eq!(one.cost_micros(&usage(1_499_999, 0, 0, 0)), 1);
        assert_eq!(one.cost_micros(&usage(1_500_000, 0, 0, 0)), 2);
        // Written tokens at 1.25 × 1: 400_000 → 0.5 µ$ → rounds up to 1.
        assert_eq!(one.cost_micros(&usage(400_000, 0, 400_000, 0)), 1);
        // Parts that would each round down add up before the one rounding:
        // 0.3 + 0.3 = 0.6 → 1.
        let split = Price {
            input: 1,
            cached_input: 0,
            output: 1,
        };
        assert_eq!(split.cost_micros(&usage(300_000, 0, 0, 300_000)), 1);
    }

    #[test]
    fn never_overflows() {
        let max = Price {
            input: u64::MAX,
            cached_input: u64::MAX,
            output: u64::MAX,
        };
        let cost = max.cost_micros(&usage(u64::MAX, 0, 0, u64::MAX));
        assert_eq!(cost, u64::MAX);
    }

    #[test]
    fn parses_prices() {
        assert_eq!("3000000:300000:15000000".parse::<Price>(), Ok(P));
        assert_eq!(P.to_string().parse::<Price>(), Ok(P));
        for bad in ["1:2", "1:2:3:4", "a:b:c", "1:-2:3", ""] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_tier_price_is_half_rounded_up() {
        assert_eq!(
            Price::DEFAULT.half(),
            Price {
                input: 500_000,
                cached_input: 50_000,
                output: 2_000_000
            }
        );
        let odd = Price {
            input: 3,
            cached_input: 1,
            output: 5,
        };
        let half = Price {
            input: 2,
            cached_input: 1,
            output: 3,
        };
        assert_eq!(odd.half(), half);
        let max = Price {
            input: u64::MAX,
            cached_input: 0,
            output: u64::MAX - 1,
        };
        assert_eq!(max.half().input, u64::MAX / 2 + 1);
        assert_eq!(max.half().output, u64::MAX / 2);
        let model = ModelPrice::standard(odd);
        assert_eq!(model.at(Tier::Standard), odd);
        assert_eq!(model.at(Tier::Flex), half);
        assert_eq!(model.at(Tier::Batch), half);
        let given = model.with(Tier::Batch, P);
        assert_eq!(given.at(Tier::Batch), P);
        assert_eq!(given.at(Tier::Flex), half);
    }

    #[test]
    fn a_model_price_reads_its_tiers_from_sub_tables() {
        let flat: ModelPrice = toml::from_str("input = 3\ncached_input = 1\noutput = 5").unwrap();
        assert_eq!(flat.flex, None);
        let tiers: ModelPrice = toml::from_str(
            "input = 3\ncached_input = 1\noutput = 5\n\
             flex = { input = 9, cached_input = 9, output = 9 }",
        )
        .unwrap();
        assert_eq!(tiers.at(Tier::Flex).input, 9);
        assert_eq!(tiers.at(Tier::Batch).input, 2);
        for bad in [
            "input = 3\ncached_input = 1",
            "input = 3\ncached_input = 1\noutput = 5\npriority = 1",
            "input = 3\ncached_input = 1\noutput = 5\nflex = { input = 1 }",
        ] {
            assert!(toml::from_str::<ModelPrice>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(Tier::Flex).unwrap(), "flex");
    }
}
