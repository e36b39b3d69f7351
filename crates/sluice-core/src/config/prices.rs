//! The price table (`[[prices]]`): what each provider charges per model,
//! on each tier it sells (µ$ per million tokens).

use std::collections::HashSet;

use serde::Deserialize;

use crate::pricing::{Price, Prices};

/// One line of the price table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub provider: String,
    /// The model name the provider bills (the route's `upstream_model`).
    pub model: String,
    /// The standard (real-time) price.
    #[serde(flatten)]
    pub price: Price,
    /// The flex price; half the standard price if absent.
    #[serde(default)]
    pub flex: Option<Price>,
    /// The Batch API price; half the standard price if absent.
    #[serde(default)]
    pub batch: Option<Price>,
}

impl PriceEntry {
    pub fn prices(&self) -> Prices {
        Prices::new(self.price, self.flex, self.batch)
    }
}

/// Refuses a line whose provider is not defined, or a provider and model
/// priced twice, saying which line.
pub(super) fn validate(prices: &[PriceEntry], providers: &HashSet<&str>) -> Result<(), String> {
    let mut priced = HashSet::new();
    for (i, p) in prices.iter().enumerate() {
        let at = format!("prices[{i}] ({:?}, {:?})", p.provider, p.model);
        if !providers.contains(p.provider.as_str()) {
            let tiers = if p.flex.is_some() || p.batch.is_some() {
                " (a tier's price needs its provider defined too)"
            } else {
                ""
            };
            return Err(format!("{at}: unknown provider {:?}{tiers}", p.provider));
        }
        if !priced.insert((p.provider.as_str(), p.model.as_str())) {
            return Err(format!("{at}: this provider and model are already priced"));
        }
    }
    Ok(())
}
