//! Fair share between tenants: what a job carries for it ([`Share`]), and
//! the virtual token counters that decide whose job goes next
//! ([`Counters`]), after the virtual token counter of Sheng et al.,
//! "Fairness in Serving Large Language Models" (OSDI '24).
//!
//! Each tenant has a counter per priority class: the service it was given,
//! in tokens weighted as they are priced (a completion token counts the
//! output price over the input price), divided by the tenant's weight.
//! When provider capacity frees up, the waiting job of the tenant with the
//! least counter goes next. A tenant that starts waiting again is lifted to
//! the least counter of those waiting, so time spent idle banks no credit;
//! while only one tenant waits, it takes every slot (work-conserving).
//!
//! The counters are kept fleet-wide (the worker's gate merges its own
//! charges with the fleet's); this module is the arithmetic alone.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The units of one token of service at weight 1 (so a weight of up to
/// this much still charges a token something).
pub const UNITS_PER_TOKEN: u64 = 1_000;

/// A job's claim on provider capacity, set by the API from its key and
/// tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The tenant's weight against other tenants (1 when unset): a tenant
    /// of weight 2 is given twice the tokens of one of weight 1 while
    /// both wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The most jobs of the job's key in flight at once, fleet-wide; a job
    /// over it waits in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_max_inflight: Option<u32>,
}

impl Share {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The weight, at least 1.
    pub fn weight(&self) -> u64 {
        u64::from(self.weight.unwrap_or(1).max(1))
    }

    /// The counter units `tokens` (already weighted by price) cost a tenant
    /// of this share's weight.
    pub fn units(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(UNITS_PER_TOKEN) / self.weight()
    }
}

/// Tokens weighted as they are priced: prompt tokens count 1, completion
/// tokens `completion_weight` (the model's output price over its input
/// price, 1 when it has no price).
pub fn priced_tokens(prompt: u64, completion: u64, completion_weight: u64) -> u64 {
    prompt.saturating_add(completion.saturating_mul(completion_weight.max(1)))
}

/// Virtual counters, one per tenant, of one priority class.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    values: HashMap<String, u64>,
}

impl Counters {
    pub fn get(&self, tenant: &str) -> u64 {
        self.values.get(tenant).copied().unwrap_or(0)
    }

    /// The tenant among `waiting` with the least counter (ties: the first
    /// given, so callers pass tenants in a stable order).
    pub fn least<'a>(&self, waiting: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        waiting.into_iter().min_by_key(|t| self.get(t))
    }

    /// Lifts `tenant` to at least `floor`: a tenant that starts waiting
    /// again starts from the least counter of those waiting, so that time
    /// spent idle is not service owed. Answers how far it was lifted.
    pub fn lift(&mut self, tenant: &str, floor: u64) -> u64 {
        let value = self.values.entry(tenant.to_owned()).or_insert(0);
        let lifted = floor.saturating_sub(*value);
        *value += lifted;
        lifted
    }

    /// Adds `units` of service to `tenant`.
    pub fn charge(&mut self, tenant: &str, units: u64) {
        let value = self.values.entry(tenant.to_owned()).or_insert(0);
        *value = value.saturating_add(units);
    }

    /// Takes the fleet's view of `tenant`: counters only grow, so the
    /// larger of the two is the more recent.
    pub fn merge(&mut self, tenant: &str, fleet: u64) {
        let value = self.values.entry(tenant.to_owned()).or_insert(0);
        *value = (*value).max(fleet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_served_tenant_goes_next_and_weights_divide_the_charge() {
        let mut c = Counters::default();
        let heavy = Share {
            weight: Some(2),
            key_max_inflight: None,
        };
        c.charge("a", Share::default().units(100));
        c.charge("b", heavy.units(150));
        // b was given more tokens, but at twice the weight they cost less.
        assert_eq!(c.least(["a", "b"]), Some("b"));
        c.charge("b", heavy.units(100));
        assert_eq!(c.least(["a", "b"]), Some("a"));
        assert_eq!(c.least(std::iter::empty()), None);
    }

    #[test]
    fn a_tenant_back_from_idle_starts_at_the_least_waiting_counter_not_below() {
        let mut c = Counters::default();
        c.charge("a", 5_000);
        // b was idle: it may not claim 5,000 units of catching up.
        assert_eq!(c.lift("b", c.get("a")), 5_000);
        assert_eq!(c.get("b"), 5_000);
        // A lift never lowers a counter.
        c.charge("b", 10);
        assert_eq!(c.lift("b", 1), 0);
        assert_eq!(c.get("b"), 5_010);
    }

    #[test]
    fn the_fleet_view_never_moves_a_counter_back() {
        let mut c = Counters::default();
        c.charge("a", 100);
        c.merge("a", 40);
        assert_eq!(c.get("a"), 100);
        c.merge("a", 400);
        assert_eq!(c.get("a"), 400);
    }

    #[test]
    fn completion_tokens_count_as_priced() {
        assert_eq!(priced_tokens(100, 10, 4), 140);
        assert_eq!(priced_tokens(100, 10, 0), 110);
        let share = Share::default();
        assert!(share.is_default());
        assert_eq!(share.units(3), 3 * UNITS_PER_TOKEN);
        let json = serde_json::to_string(&Share {
            weight: Some(3),
            key_max_inflight: Some(10),
        })
        .unwrap();
        assert_eq!(json, r#"{"weight":3,"key_max_inflight":10}"#);
    }
}
