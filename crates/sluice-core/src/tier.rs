//! Cost tiers: the ways a job can be answered, cheapest first, and the
//! rule that picks the tier of a provider call from its jobs' deadlines.
//!
//! 1. `cache`: an answer found in the cache, or shared with an identical
//!    job in flight: no call of its own, no cost.
//! 2. `provider_batch`: the provider's Batch API (half price, hours).
//! 3. `flex`: the provider's flex processing (`service_tier: "flex"`):
//!    the batch price, answered in minutes, sometimes refused (429).
//! 4. `realtime`: the standard call, at the standard price.
//!
//! A job without a deadline cannot wait, so it goes out in real time. A
//! job whose deadline leaves at least the provider's `flex.min_deadline_s`
//! goes out on flex, with a timeout that still leaves `realtime_margin_s`
//! before its deadline for a standard call if flex refuses or is too slow
//! ([`FlexConfig::plan`]).

mod batch;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use batch::BatchConfig;

/// How a job was answered.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// From the cache, or shared with an identical job in flight.
    Cache,
    /// A standard provider call.
    #[default]
    Realtime,
    /// The provider's flex processing.
    Flex,
    /// A line of a provider Batch API batch.
    ProviderBatch,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Self::Cache, Self::Realtime, Self::Flex, Self::ProviderBatch];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Realtime => "realtime",
            Self::Flex => "flex",
            Self::ProviderBatch => "provider_batch",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier {s:?}"))
    }
}

/// A provider's flex processing (`[providers.flex]`): which models take
/// it, and how much of a deadline it needs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlexConfig {
    /// The model names the provider knows (as in `[[prices]]`) that take
    /// flex; empty: every model.
    pub models: Vec<String>,
    /// A call goes out on flex only if every job it serves has at least
    /// this long before its deadline.
    pub min_deadline_s: u64,
    /// The longest a flex call may take (flex answers are slow).
    pub timeout_s: u64,
    /// Time kept before the deadline for a standard call, should flex
    /// refuse or not answer: a flex call's timeout ends this long before
    /// its earliest deadline.
    pub realtime_margin_s: u64,
}

impl Default for FlexConfig {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            min_deadline_s: 600,
            timeout_s: 900,
            realtime_margin_s: 180,
        }
    }
}

impl FlexConfig {
    /// Whether `model` (the provider's name for it) takes flex.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    /// The timeout of a flex call for `model` whose jobs' earliest
    /// deadline is `slack` away, or `None` when the call must go out in
    /// real time (no deadline, too close, or a model without flex).
    pub fn plan(&self, model: &str, slack: Option<Duration>) -> Option<Duration> {
        let slack = slack?;
        if !self.serves(model) || slack < Duration::from_secs(self.min_deadline_s) {
            return None;
        }
        let left = slack.checked_sub(Duration::from_secs(self.realtime_margin_s))?;
        Some(left.min(Duration::from_secs(self.timeout_s)))
    }

    /// Why this table cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_s == 0 {
            return Err("flex.timeout_s must be above 0".into());
        }
        if self.min_deadline_s <= self.realtime_margin_s {
            return Err(format!(
                "flex.min_deadline_s ({}) must be above flex.realtime_margin_s ({}): a flex call needs time of its own before the margin",
                self.min_deadline_s, self.realtime_margin_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn only_a_job_that_can_wait_goes_to_flex_and_its_call_ends_before_the_margin() {
        let flex = FlexConfig::default();
        assert_eq!(flex.plan("m", None), None, "no deadline: real time");
        assert_eq!(flex.plan("m", secs(599)), None, "too close");
        // 10 min left: 7 min of flex, 3 min kept for a standard call.
        assert_eq!(flex.plan("m", secs(600)), secs(420));
        // A day left: the flex timeout bounds it.
        assert_eq!(flex.plan("m", secs(86_400)), secs(900));
    }

    #[test]
    fn flex_serves_only_the_models_named() {
        let flex = FlexConfig {
            models: vec!["gpt-5-mini".into()],
            ..FlexConfig::default()
        };
        assert!(flex.plan("gpt-5-mini", secs(3600)).is_some());
        assert_eq!(flex.plan("gpt-4o", secs(3600)), None);
    }

    #[test]
    fn a_margin_as_long_as_the_minimum_is_refused() {
        let flex = FlexConfig {
            min_deadline_s: 60,
            realtime_margin_s: 60,
            ..FlexConfig::default()
        };
        assert!(flex.validate().unwrap_err().contains("realtime_margin_s"));
    }

    #[test]
    fn tiers_parse_their_names() {
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
