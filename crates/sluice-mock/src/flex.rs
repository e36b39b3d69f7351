//! Flex processing, as OpenAI offers it on its real-time routes: a request
//! whose body says `"service_tier": "flex"` is served slower, is sometimes
//! turned away for want of capacity, and costs less.
//!
//! On `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`:
//!
//! - `service_tier` absent, `"auto"` or `"default"` is the standard tier;
//!   `"flex"` is flex; anything else is a 400 (`param: "service_tier"`).
//!   The answer echoes `"service_tier": "default"` or `"flex"`.
//! - A flex request's latency is [`FlexOptions::slowdown`] times the usual
//!   one (see [`latency`](crate::latency)).
//! - A share [`FlexOptions::unavailable`] of flex requests is answered 429
//!   `{"error": {"message": "Resource Unavailable: …", "type":
//!   "service_unavailable_error", "param": null, "code":
//!   "resource_unavailable"}}`, before the rate limits are consulted, so it
//!   costs none of their budget; it is not billed and is counted as
//!   `flex_unavailable` in the stats and the bill. The draw is seeded by
//!   the seed and the flex request's number (see [`dice`](crate::dice)).
//!   It carries no `Retry-After`: that is how a client tells it from a
//!   rate limit.
//! - An answered flex request is billed at the model's flex price (see
//!   [`pricing`](crate::pricing)), under `by_tier.flex` in the bill.

use clap::Args;
use serde::Deserialize;

use crate::dice::{draw, Purpose};
use crate::error::ApiError;
use crate::pricing::Tier;
use crate::ratio::{Factor, Ratio};

/// The slowdown unless configured: three times the usual latency.
const SLOWDOWN: Factor = Factor::whole(3);

/// `[flex]` and the `--flex-*` flags. [`Default`] slows flex requests
/// down three times and never turns one away.
#[derive(Args, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Flex processing")]
pub struct FlexOptions {
    /// A flex request (service_tier "flex") takes this many times the
    /// usual latency.
    #[arg(long = "flex-slowdown", value_name = "FACTOR", default_value_t = SLOWDOWN)]
    pub slowdown: Factor,
    /// Share of flex requests answered 429 resource_unavailable (not
    /// billed, not counted against the rate limits), seeded by --seed.
    #[arg(long = "flex-unavailable", value_name = "FRACTION", default_value_t)]
    pub unavailable: Ratio,
}

impl Default for FlexOptions {
    fn default() -> Self {
        Self {
            slowdown: SLOWDOWN,
            unavailable: Ratio::ZERO,
        }
    }
}

impl FlexOptions {
    /// Whether the flex request numbered `sequence` (among flex requests)
    /// finds no capacity.
    pub(crate) fn turns_away(&self, seed: u64, sequence: u64) -> bool {
        !self.unavailable.is_zero()
            && self
                .unavailable
                .hits(draw(seed, sequence, Purpose::FlexUnavailable))
    }
}

/// The tier a real-time request asks for with `service_tier`.
pub(crate) fn requested_tier(service_tier: Option<&str>) -> Result<Tier, ApiError> {
    match service_tier {
        None | Some("auto" | "default") => Ok(Tier::Standard),
        Some("flex") => Ok(Tier::Flex),
        Some(other) => Err(ApiError::invalid(
            "service_tier",
            format!(
                "Invalid value for 'service_tier': {other:?}. Supported values are: \
                 'auto', 'default' and 'flex'."
            ),
        )),
    }
}

/// What an answer on `tier` says in its `service_tier` field.
pub(crate) fn echoed(tier: Tier) -> &'static str {
    match tier {
        Tier::Flex => "flex",
        Tier::Standard | Tier::Batch => "default",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_tiers_map_to_tiers() {
        assert_eq!(requested_tier(None), Ok(Tier::Standard));
        assert_eq!(requested_tier(Some("auto")), Ok(Tier::Standard));
        assert_eq!(requested_tier(Some("default")), Ok(Tier::Standard));
        assert_eq!(requested_tier(Some("flex")), Ok(Tier::Flex));
        assert!(requested_tier(Some("priority")).is_err());
        assert!(requested_tier(Some("Flex")).is_err());
        assert_eq!(echoed(Tier::Flex), "flex");
        assert_eq!(echoed(Tier::Batch), "default");
    }

    #[test]
    fn unavailability_is_seeded_and_roughly_honoured() {
        let flex = FlexOptions {
            unavailable: Ratio::percent(25),
            ..FlexOptions::default()
        };
        let refused = (0..10_000).filter(|&i| flex.turns_away(3, i)).count();
        assert!((2_200..=2_800).contains(&refused), "{refused}");
        let again = (0..10_000).filter(|&i| flex.turns_away(3, i)).count();
        assert_eq!(refused, again);
        assert!(!(0..1_000).any(|i| FlexOptions::default().turns_away(3, i)));
    }
}
