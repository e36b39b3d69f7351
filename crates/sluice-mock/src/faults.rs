//! Fault injection: a share of requests fails with a 5xx, a share stalls.
//!
//! Decided per admitted request (past validation and rate limits) from the
//! seed and the request's sequence number (see [`dice`](crate::dice)), so a
//! run is reproducible. A request first draws for an error (`error_rate`;
//! then 500 or 503, even odds); one that does not fail draws for a stall
//! (`stall_rate`): it is served and billed as usual, but answers `stall`
//! later than the latency model says, long enough to outlast a caller's
//! timeout. Injected errors are answered at once and never billed.
//! Being down (`POST /mock/admin/down`) is separate: every `/v1` call
//! answers 503 until `POST /mock/admin/up`.

use std::time::Duration;

use axum::http::StatusCode;
use clap::Args;
use serde::Deserialize;

use crate::dice::{draw, Purpose};
use crate::ratio::Ratio;

/// `[faults]` and their flags: fault rates. [`Default`] injects nothing.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Faults")]
pub struct Faults {
    /// Share of admitted requests answered 500 or 503 (not billed), seeded
    /// by --seed.
    #[arg(long, value_name = "FRACTION", default_value_t)]
    pub error_rate: Ratio,
    /// Share of the other requests that stall for --stall-ms before
    /// answering (still billed).
    #[arg(long, value_name = "FRACTION", default_value_t)]
    pub stall_rate: Ratio,
    /// How long a stall lasts, on top of the usual latency, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t)]
    pub stall_ms: u64,
}

/// What befalls one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Serve,
    Stall(Duration),
    Fail(StatusCode),
}

impl Faults {
    /// How long a stall lasts.
    pub fn stall(&self) -> Duration {
        Duration::from_millis(self.stall_ms)
    }

    pub(crate) fn fate(&self, seed: u64, sequence: u64) -> Fate {
        if !self.error_rate.is_zero() && self.error_rate.hits(draw(seed, sequence, Purpose::Error))
        {
            let status = if draw(seed, sequence, Purpose::ErrorStatus) & 1 == 0 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return Fate::Fail(status);
        }
        if !self.stall_rate.is_zero() && self.stall_rate.hits(draw(seed, sequence, Purpose::Stall))
        {
            return Fate::Stall(self.stall());
        }
        Fate::Serve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_serves_everything() {
        let faults = Faults::default();
        assert!((0..1_000).all(|i| faults.fate(1, i) == Fate::Serve));
    }

    #[test]
    fn rates_are_roughly_honoured_and_reproducible() {
        let faults = Faults {
            error_rate: Ratio::percent(10),
            stall_rate: Ratio::percent(50),
            stall_ms: 30_000,
        };
        let fates: Vec<Fate> = (0..10_000).map(|i| faults.fate(42, i)).collect();
        let count = |f: &dyn Fn(&Fate) -> bool| fates.iter().filter(|x| f(x)).count();
        let errors = count(&|f| matches!(f, Fate::Fail(_)));
        let e500 = count(&|f| *f == Fate::Fail(StatusCode::INTERNAL_SERVER_ERROR));
        let stalls = count(&|f| matches!(f, Fate::Stall(_)));
        assert!((900..=1_100).contains(&errors), "{errors}");
        assert!(
            e500 > errors / 3 && e500 < errors * 2 / 3,
            "{e500} of {errors}"
        );
        // Half of the 90% that did not fail.
        assert!((4_200..=4_800).contains(&stalls), "{stalls}");
        let again: Vec<Fate> = (0..10_000).map(|i| faults.fate(42, i)).collect();
        assert_eq!(fates, again);
        let other: Vec<Fate> = (0..10_000).map(|i| faults.fate(43, i)).collect();
        assert_ne!(fates, other);
    }

    #[test]
    fn full_rates_always_apply() {
        let fail = Faults {
            error_rate: Ratio::ONE,
            ..Faults::default()
        };
        assert!((0..100).all(|i| matches!(fail.fate(0, i), Fate::Fail(_))));
        let stall = Faults {
            stall_rate: Ratio::ONE,
            stall_ms: 5_000,
            ..Faults::default()
        };
        assert!((0..100).all(|i| stall.fate(0, i) == Fate::Stall(Duration::from_secs(5))));
    }
}
