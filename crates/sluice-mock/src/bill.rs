//! The mock's own bill: what each model was charged, by the rule in
//! [`pricing`](crate::pricing), and the errors it served instead of
//! answers (which cost nothing). `GET /mock/bill` returns it; it is the
//! ground truth for every cost figure Sluice computes.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::pricing::Usage;

/// The charges of one model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelBill {
    /// Requests billed (answered 200).
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

/// A snapshot of the bill since start or the last reset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MockBill {
    /// The sum of `by_model[*].cost_micros`.
    pub total_cost_micros: u64,
    pub by_model: BTreeMap<String, ModelBill>,
    /// 429s served (not billed).
    pub rate_limited: u64,
    /// Injected 5xx served (not billed).
    pub injected_errors: u64,
    /// 503s served while down (not billed).
    pub down_rejections: u64,
}

impl MockBill {
    /// The charges of one model, zero if it was never billed.
    pub fn model(&self, model: &str) -> ModelBill {
        self.by_model.get(model).cloned().unwrap_or_default()
    }

    fn charge(&mut self, model: &str, usage: &Usage, cost_micros: u64) {
        self.total_cost_micros = self.total_cost_micros.saturating_add(cost_micros);
        let entry = self.by_model.entry(model.to_owned()).or_default();
        entry.requests = entry.requests.saturating_add(1);
        entry.prompt_tokens = entry.prompt_tokens.saturating_add(usage.prompt_tokens);
        entry.cached_tokens = entry.cached_tokens.saturating_add(usage.cached_tokens);
        entry.cache_write_tokens = entry
            .cache_write_tokens
            .saturating_add(usage.cache_write_tokens);
        entry.completion_tokens = entry
            .completion_tokens
            .saturating_add(usage.completion_tokens);
        entry.cost_micros = entry.cost_micros.saturating_add(cost_micros);
    }
}

/// An error the mock served instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    RateLimited,
    Injected,
    Down,
}

/// The live bill, shared by every handler.
#[derive(Debug, Default)]
pub(crate) struct BillRecorder {
    inner: Mutex<MockBill>,
}

impl BillRecorder {
    pub(crate) fn charge(&self, model: &str, usage: &Usage, cost_micros: u64) {
        self.lock().charge(model, usage, cost_micros);
    }

    pub(crate) fn refused(&self, refusal: Refusal) {
        let mut bill = self.lock();
        let counter = match refusal {
            Refusal::RateLimited => &mut bill.rate_limited,
            Refusal::Injected => &mut bill.injected_errors,
            Refusal::Down => &mut bill.down_rejections,
        };
        *counter = counter.saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> MockBill {
        self.lock().clone()
    }

    pub(crate) fn reset(&self) {
        *self.lock() = MockBill::default();
    }

    // Each update is a handful of additions, so a poisoned lock still
    // holds a consistent bill and is simply taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, MockBill> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_per_model_and_in_total() {
        let rec = BillRecorder::default();
        let usage = Usage {
            prompt_tokens: 100,
            cached_tokens: 64,
            cache_write_tokens: 0,
            completion_tokens: 10,
        };
        rec.charge("a", &usage, 7);
        rec.charge("a", &usage, 8);
        rec.charge("b", &Usage::default(), 0);
        rec.refused(Refusal::RateLimited);
        rec.refused(Refusal::Injected);
        rec.refused(Refusal::Injected);
        rec.refused(Refusal::Down);
        let bill = rec.snapshot();
        assert_eq!(bill.total_cost_micros, 15);
        assert_eq!(
            bill.model("a"),
            ModelBill {
                requests: 2,
                prompt_tokens: 200,
                cached_tokens: 128,
                cache_write_tokens: 0,
                completion_tokens: 20,
                cost_micros: 15
            }
        );
        assert_eq!(bill.model("b").requests, 1);
        assert_eq!(bill.model("never"), ModelBill::default());
        assert_eq!(
            (
                bill.rate_limited,
                bill.injected_errors,
                bill.down_rejections
            ),
            (1, 2, 1)
        );
        rec.reset();
        assert_eq!(rec.snapshot(), MockBill::default());
    }
}
