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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

/// `"MODEL=INPUT:CACHED_INPUT:OUTPUT"`, as `--price` takes it; the model
/// `default` stands for the default entry.
pub fn parse_model_price(text: &str) -> Result<(String, Price), ParsePriceError> {
    let fail = || ParsePriceError(text.to_owned());
    let (model, price) = text.split_once('=').ok_or_else(fail)?;
    let model = model.trim();
    if model.is_empty() {
        return Err(fail());
    }
    let price = price.parse().map_err(|_| fail())?;
    Ok((model.to_owned(), price))
}

/// `[prices]` and `--price`: prices per model, with a default for every
/// model not listed.
///
/// Its flags are written by hand rather than derived, since many `--price`
/// flags fill one table: each sets one model's price (or the default's),
/// over what the table held, as the `[prices]` of a file does.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// The price of a model missing from `models`.
    pub default: Price,
    /// Prices by exact model name.
    pub models: BTreeMap<String, Price>,
}

/// The model name that `--price` takes for the default entry.
const DEFAULT_MODEL: &str = "default";

/// The id of `--price` among the command's arguments.
const PRICE_ARG: &str = "price";

impl PriceTable {
    /// The price of `model`.
    pub fn price(&self, model: &str) -> &Price {
        self.models.get(model).unwrap_or(&self.default)
    }

    /// The cost of `usage` on `model`, in micro-dollars.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> u64 {
        self.price(model).cost_micros(usage)
    }

    /// Sets the price of `model`, or the default's for `default`.
    pub fn set(&mut self, model: &str, price: Price) {
        if model == DEFAULT_MODEL {
            self.default = price;
        } else {
            self.models.insert(model.to_owned(), price);
        }
    }
}

impl clap::Args for PriceTable {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.next_help_heading("Prices").arg(
            clap::Arg::new(PRICE_ARG)
                .long("price")
                .value_name("MODEL=INPUT:CACHED_INPUT:OUTPUT")
                .action(clap::ArgAction::Append)
                .value_parser(parse_model_price)
                .help(format!(
                    "The price of MODEL, or of every unlisted model with MODEL \
                     `{DEFAULT_MODEL}`, in micro-dollars per million tokens; repeatable \
                     [default: {DEFAULT_MODEL}={}]",
                    Price::DEFAULT
                )),
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for PriceTable {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut table = Self::default();
        table.update_from_arg_matches(matches)?;
        Ok(table)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let given = matches
            .try_get_many::<(String, Price)>(PRICE_ARG)
            .map_err(|err| clap::Error::raw(clap::error::ErrorKind::ValueValidation, err))?;
        for (model, price) in given.into_iter().flatten() {
            self.set(model, *price);
        }
        Ok(())
    }
}

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
    fn table_falls_back_to_default() {
        let table = PriceTable {
            default: Price::DEFAULT,
            models: BTreeMap::from([("big".to_owned(), P)]),
        };
        assert_eq!(table.price("big"), &P);
        assert_eq!(table.price("other"), &Price::DEFAULT);
        assert_eq!(table.cost_micros("big", &usage(1_000, 0, 0, 100)), 4_500);
    }

    #[test]
    fn parses_prices() {
        assert_eq!("3000000:300000:15000000".parse::<Price>(), Ok(P));
        assert_eq!(P.to_string().parse::<Price>(), Ok(P));
        for bad in ["1:2", "1:2:3:4", "a:b:c", "1:-2:3", ""] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
        assert_eq!(
            parse_model_price("big=3000000:300000:15000000"),
            Ok(("big".to_owned(), P))
        );
        for bad in ["big", "=1:2:3", "big=1:2"] {
            assert!(parse_model_price(bad).is_err(), "{bad}");
        }
    }
}
