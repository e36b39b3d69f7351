//! [`PriceTable`]: the prices of every model, by tier, with a default for
//! the models not listed; read from `[prices]` in a file and from the
//! `--price`, `--flex-price` and `--batch-price` flags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ModelPrice, ParsePriceError, Price, Tier, Usage};

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
/// over what the table held, as the `[prices]` of a file does. The
/// `--price` flags apply first, then `--flex-price`, then `--batch-price`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// The price of a model missing from `models`.
    pub default: ModelPrice,
    /// Prices by exact model name.
    pub models: BTreeMap<String, ModelPrice>,
}

/// The model name that the price flags take for the default entry.
const DEFAULT_MODEL: &str = "default";

/// The flags, as (argument id and long name, tier).
const FLAGS: [(&str, Tier); 3] = [
    ("price", Tier::Standard),
    ("flex-price", Tier::Flex),
    ("batch-price", Tier::Batch),
];

impl PriceTable {
    /// The standard price of `model`.
    pub fn price(&self, model: &str) -> &Price {
        &self.model_price(model).standard
    }

    /// Every price of `model`.
    pub fn model_price(&self, model: &str) -> &ModelPrice {
        self.models.get(model).unwrap_or(&self.default)
    }

    /// The price of `model` on `tier`.
    pub fn price_at(&self, model: &str, tier: Tier) -> Price {
        self.model_price(model).at(tier)
    }

    /// The cost of `usage` on `model` at the standard price, in
    /// micro-dollars.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> u64 {
        self.price(model).cost_micros(usage)
    }

    /// The cost of `usage` on `model` on `tier`, in micro-dollars.
    pub fn cost_micros_at(&self, model: &str, tier: Tier, usage: &Usage) -> u64 {
        self.price_at(model, tier).cost_micros(usage)
    }

    /// Sets the standard price of `model`, or the default's for `default`;
    /// the flex and batch prices it was given, if any, stay.
    pub fn set(&mut self, model: &str, price: Price) {
        self.set_at(model, Tier::Standard, price);
    }

    /// Sets the price of `model` (or the default's) on `tier`. A model not
    /// listed yet starts from the default's prices for a flex or batch
    /// price, and from `price` alone for a standard one.
    pub fn set_at(&mut self, model: &str, tier: Tier, price: Price) {
        if model == DEFAULT_MODEL {
            self.default = self.default.with(tier, price);
            return;
        }
        let start = match tier {
            Tier::Standard => ModelPrice::standard(price),
            Tier::Flex | Tier::Batch => self.default,
        };
        let entry = self.models.entry(model.to_owned()).or_insert(start);
        *entry = entry.with(tier, price);
    }
}

impl clap::Args for PriceTable {
    fn augment_args(command: clap::Command) -> clap::Command {
        let mut command = command.next_help_heading("Prices");
        for (id, tier) in FLAGS {
            let help = match tier {
                Tier::Standard => format!(
                    "The price of MODEL, or of every unlisted model with MODEL \
                     `{DEFAULT_MODEL}`, in micro-dollars per million tokens; repeatable \
                     [default: {DEFAULT_MODEL}={}]",
                    Price::DEFAULT
                ),
                Tier::Flex | Tier::Batch => format!(
                    "The {tier} price of MODEL (or `{DEFAULT_MODEL}`), in micro-dollars \
                     per million tokens; repeatable [default: half the standard price, \
                     each figure rounded up]"
                ),
            };
            command = command.arg(
                clap::Arg::new(id)
                    .long(id)
                    .value_name("MODEL=INPUT:CACHED_INPUT:OUTPUT")
                    .action(clap::ArgAction::Append)
                    .value_parser(parse_model_price)
                    .help(help),
            );
        }
        command
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
        for (id, tier) in FLAGS {
            let given = matches
                .try_get_many::<(String, Price)>(id)
                .map_err(|err| clap::Error::raw(clap::error::ErrorKind::ValueValidation, err))?;
            for (model, price) in given.into_iter().flatten() {
                self.set_at(model, tier, *price);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command, FromArgMatches};

    use super::*;

    const P: Price = Price {
        input: 3_000_000,
        cached_input: 300_000,
        output: 15_000_000,
    };

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    fn flags(args: &[&str]) -> PriceTable {
        let argv = ["mock"].iter().chain(args);
        let matches = PriceTable::augment_args(Command::new("mock"))
            .try_get_matches_from(argv)
            .unwrap();
        PriceTable::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn table_falls_back_to_default() {
        let table = PriceTable {
            default: ModelPrice::DEFAULT,
            models: BTreeMap::from([("big".to_owned(), ModelPrice::standard(P))]),
        };
        assert_eq!(table.price("big"), &P);
        assert_eq!(table.price("other"), &Price::DEFAULT);
        assert_eq!(table.cost_micros("big", &usage(1_000, 100)), 4_500);
        // Half price, rounded once: 1000 × 1.5 + 100 × 7.5 = 2250.
        assert_eq!(
            table.cost_micros_at("big", Tier::Batch, &usage(1_000, 100)),
            2_250
        );
        assert_eq!(table.price_at("other", Tier::Flex), Price::DEFAULT.half());
    }

    #[test]
    fn parses_model_prices() {
        assert_eq!(
            parse_model_price("big=3000000:300000:15000000"),
            Ok(("big".to_owned(), P))
        );
        for bad in ["big", "=1:2:3", "big=1:2"] {
            assert!(parse_model_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tier_flags_set_their_tier_only() {
        let table = flags(&[
            "--batch-price=big=1:1:1",
            "--price=big=4:4:4",
            "--flex-price=default=7:7:7",
            "--batch-price=solo=2:2:2",
        ]);
        // --price applies first, so the batch price given before it stays.
        let big = table.model_price("big");
        assert_eq!(big.at(Tier::Standard).input, 4);
        assert_eq!(big.at(Tier::Flex).input, 2);
        assert_eq!(big.at(Tier::Batch).input, 1);
        assert_eq!(table.price_at("any", Tier::Flex).input, 7);
        assert_eq!(table.price_at("any", Tier::Batch), Price::DEFAULT.half());
        // A model with only a batch price takes the default's other prices.
        assert_eq!(table.price("solo"), &Price::DEFAULT);
        assert_eq!(table.price_at("solo", Tier::Flex).input, 7);
        assert_eq!(table.price_at("solo", Tier::Batch).input, 2);
    }

    #[test]
    fn setting_the_standard_price_keeps_the_tier_prices() {
        let mut table = PriceTable::default();
        table.set_at("m", Tier::Flex, P);
        table.set("m", Price::DEFAULT);
        assert_eq!(table.price_at("m", Tier::Flex), P);
        assert_eq!(table.price("m"), &Price::DEFAULT);
    }
}
