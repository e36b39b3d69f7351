//! The mock's own bill: what each model was charged, by the rule in
//! [`pricing`](crate::pricing), and the errors it served instead of
//! answers (which cost nothing). `GET /mock/bill` returns it; it is the
//! ground truth for every cost figure Sluice computes.
//!
//! Every charge is counted three times: in the total, under its model and
//! under its [`Tier`] (`by_tier`, and `by_model[m].by_tier`), so each of
//! `by_model` and `by_tier` sums to the total. Both `by_tier` maps always
//! hold `standard`, `flex` and `batch`, zero when nothing was charged. A
//! batch line answered is one request on the `batch` tier.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pricing::{Tier, Usage};

/// The charges of one tier (of every model, or of one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TierBill {
    /// Requests billed (answered 200; batch lines answered).
    pub requests: u64,
    /// Every prompt token, cached or not.
    pub prompt_tokens: u64,
    /// Prompt tokens read from the prefix cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the prefix cache (Anthropic `cache_control`).
    pub cache_write_tokens: u64,
    pub completion_tokens: u64,
    /// The sum of the requests' costs, each rounded once.
    pub cost_micros: u64,
}

impl TierBill {
    fn charge(&mut self, usage: &Usage, cost_micros: u64) {
        self.requests = self.requests.saturating_add(1);
        self.prompt_tokens = self.prompt_tokens.saturating_add(usage.prompt_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(usage.cached_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(usage.cache_write_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(usage.completion_tokens);
        self.cost_micros = self.cost_micros.saturating_add(cost_micros);
    }
}

/// Every tier, charged nothing.
fn zero_tiers() -> BTreeMap<Tier, TierBill> {
    Tier::ALL
        .into_iter()
        .map(|tier| (tier, TierBill::default()))
        .collect()
}

/// The charges of one model, every tier together, and per tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelBill {
    /// Every tier together (in JSON, fields of the object itself).
    #[serde(flatten)]
    pub charges: TierBill,
    /// The same charges per tier, every tier present.
    #[serde(default = "zero_tiers")]
    pub by_tier: BTreeMap<Tier, TierBill>,
}

impl Default for ModelBill {
    fn default() -> Self {
        Self {
            charges: TierBill::default(),
            by_tier: zero_tiers(),
        }
    }
}

impl ModelBill {
    /// The charges of one tier, zero if none.
    pub fn tier(&self, tier: Tier) -> TierBill {
        self.by_tier.get(&tier).cloned().unwrap_or_default()
    }
}

/// A snapshot of the bill since start or the last reset.
///
/// In JSON, the refusals are fields of the object itself:
/// `{"total_cost_micros", "by_model", "by_tier", "rate_limited", …}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MockBill {
    /// The sum of `by_model[*].cost_micros`, and of `by_tier[*].cost_micros`.
    pub total_cost_micros: u64,
    pub by_model: BTreeMap<String, ModelBill>,
    /// Every model together, per tier: `standard`, `flex` and `batch`,
    /// always all three.
    #[serde(default = "zero_tiers")]
    pub by_tier: BTreeMap<Tier, TierBill>,
    /// The errors served instead of answers, none of them billed.
    #[serde(flatten)]
    pub refusals: Refusals,
}

impl Default for MockBill {
    fn default() -> Self {
        Self {
            total_cost_micros: 0,
            by_model: BTreeMap::new(),
            by_tier: zero_tiers(),
            refusals: Refusals::default(),
        }
    }
}

impl MockBill {
    /// The charges of one model, zero if it was never billed.
    pub fn model(&self, model: &str) -> ModelBill {
        self.by_model.get(model).cloned().unwrap_or_default()
    }

    /// The charges of one tier, every model together; zero if none.
    pub fn tier(&self, tier: Tier) -> TierBill {
        self.by_tier.get(&tier).cloned().unwrap_or_default()
    }

    pub(crate) fn charge(&mut self, model: &str, tier: Tier, usage: &Usage, cost_micros: u64) {
        self.total_cost_micros = self.total_cost_micros.saturating_add(cost_micros);
        self.by_tier
            .entry(tier)
            .or_default()
            .charge(usage, cost_micros);
        let entry = self.by_model.entry(model.to_owned()).or_default();
        entry
            .by_tier
            .entry(tier)
            .or_default()
            .charge(usage, cost_micros);
        entry.charges.charge(usage, cost_micros);
    }
}

/// What each model cost per UTC day, for `GET /v1/organization/costs`:
/// day (days since the Unix epoch) → model → µ$.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DailyCosts(pub BTreeMap<u64, BTreeMap<String, u64>>);

impl DailyCosts {
    pub(crate) fn charge(&mut self, day: u64, model: &str, cost_micros: u64) {
        let cost = self
            .0
            .entry(day)
            .or_default()
            .entry(model.to_owned())
            .or_default();
        *cost = cost.saturating_add(cost_micros);
    }
}

/// An error the mock served instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    RateLimited,
    Injected,
    Down,
    FlexUnavailable,
}

/// The errors served instead of answers, by kind. The stats and the bill
/// both count them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Refusals {
    /// 429s served.
    pub rate_limited: u64,
    /// Injected 500s and 503s served.
    pub injected_errors: u64,
    /// 503s served while down.
    pub down_rejections: u64,
    /// Flex requests answered 429 `resource_unavailable`.
    pub flex_unavailable: u64,
}

impl Refusals {
    pub(crate) fn count(&mut self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::RateLimited => &mut self.rate_limited,
            Refusal::Injected => &mut self.injected_errors,
            Refusal::Down => &mut self.down_rejections,
            Refusal::FlexUnavailable => &mut self.flex_unavailable,
        };
        *counter = counter.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_tiers() {
        let mut bill = MockBill::default();
        bill.charge("m", Tier::Flex, &Usage::default(), 3);
        let json = serde_json::to_value(&bill).unwrap();
        assert_eq!(json["by_tier"]["flex"]["cost_micros"], 3);
        assert_eq!(json["by_model"]["m"]["by_tier"]["flex"]["requests"], 1);
        assert_eq!(json["by_tier"]["batch"]["requests"], 0);
        assert_eq!(
            json["by_model"]["m"]["by_tier"]["standard"]["cost_micros"],
            0
        );
        assert_eq!(serde_json::from_value::<MockBill>(json).unwrap(), bill);
    }

    #[test]
    fn charges_add_up_per_model_and_in_total() {
        let mut bill = MockBill::default();
        let usage = Usage {
            prompt_tokens: 100,
            cached_tokens: 64,
            cache_write_tokens: 0,
            completion_tokens: 10,
        };
        bill.charge("a", Tier::Standard, &usage, 7);
        bill.charge("a", Tier::Batch, &usage, 8);
        bill.charge("b", Tier::Standard, &Usage::default(), 0);
        bill.refusals.count(Refusal::RateLimited);
        bill.refusals.count(Refusal::Injected);
        bill.refusals.count(Refusal::Injected);
        bill.refusals.count(Refusal::Down);
        assert_eq!(bill.total_cost_micros, 15);
        let a = bill.model("a");
        assert_eq!(
            (
                a.charges.requests,
                a.charges.prompt_tokens,
                a.charges.cached_tokens,
                a.charges.completion_tokens
            ),
            (2, 200, 128, 20)
        );
        assert_eq!(a.charges.cost_micros, 15);
        assert_eq!(a.tier(Tier::Standard).cost_micros, 7);
        assert_eq!(a.tier(Tier::Batch).cost_micros, 8);
        assert_eq!(a.tier(Tier::Flex), TierBill::default());
        assert_eq!(bill.tier(Tier::Standard).requests, 2);
        assert_eq!(bill.tier(Tier::Batch).prompt_tokens, 100);
        let by_tier: u64 = bill.by_tier.values().map(|t| t.cost_micros).sum();
        assert_eq!(by_tier, bill.total_cost_micros);
        assert_eq!(bill.model("b").charges.requests, 1);
        assert_eq!(bill.model("never"), ModelBill::default());
        assert_eq!(
            bill.refusals,
            Refusals {
                rate_limited: 1,
                injected_errors: 2,
                down_rejections: 1,
                flex_unavailable: 0,
            }
        );
    }
}
