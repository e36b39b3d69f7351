//! What every adapter is built from: the HTTP side it calls through, what
//! its models cost, and how many calls of one batch it makes at once.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_core::budget::RateBudget;
use sluice_core::config::{Config, ProviderConfig};
use sluice_core::metrics::Metrics;
use sluice_core::pricing::{Price, Prices};
use sluice_core::{Tier, Usage};

use crate::http::ProviderHttp;
use crate::SetupError;

pub struct AdapterBase {
    pub http: ProviderHttp,
    /// What this provider charges, by the model name it bills.
    pub prices: HashMap<String, Prices>,
    /// Calls within one batch in flight at once (chat fans out).
    pub fanout: usize,
    /// Takes streaming calls' chunks; without one, calls do not stream.
    pub relay: Option<Arc<dyn crate::ChunkRelay>>,
}

impl AdapterBase {
    /// The base of the provider `provider` of `config`: its prices from the
    /// price table; the worker's `hooks`; the API key read from the environment variable the
    /// provider names (an error if it is unset).
    pub fn new(
        config: &Config,
        provider: &ProviderConfig,
        metrics: Arc<Metrics>,
        budget: Option<Arc<dyn RateBudget>>,
        hooks: crate::CallHooks,
    ) -> Result<Self, SetupError> {
        let prices = config
            .prices
            .iter()
            .filter(|entry| entry.provider == provider.name)
            .map(|entry| (entry.model.clone(), entry.prices()))
            .collect();
        Ok(Self {
            http: ProviderHttp::new(provider, metrics, budget, hooks.sent)?,
            prices,
            fanout: config.worker.fanout_concurrency.max(1),
            relay: hooks.relay,
        })
    }

    /// What a call for `model` on `tier` is priced at, if the table says.
    pub fn price(&self, model: &str, tier: Tier) -> Option<&Price> {
        self.prices.get(model).map(|p| p.at(tier))
    }

    /// What one call for `model` on `tier` with `usage` cost, in µ$.
    pub fn cost(&self, model: &str, tier: Tier, usage: &Usage) -> Option<u64> {
        self.price(model, tier).map(|p| p.call_cost(usage))
    }
}
