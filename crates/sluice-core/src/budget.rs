//! Fleet-wide rate budgets: requests and tokens per minute per provider,
//! shared by every worker, so that the fleet together stays under a
//! provider's limits instead of each worker spending them in full.
//!
//! The window is a sliding minute kept as one-second slots: a call is
//! granted when the requests (and tokens) granted in the current second and
//! the 60 before it, plus its own, stay within the limit (61 slots, so that
//! a grant leaves the window no sooner than a full minute after it was
//! made, whatever the fraction of its second); otherwise the answer says how long until enough
//! of the window has slid past. A single call larger than the whole token
//! limit is granted into an empty window, so that it is not starved.
//!
//! A provider that counts its limits over another window (some count per
//! 10 s; a benchmark scales the minute down) sets [`BudgetLimits::window`]:
//! the window is still 60 slots, each a sixtieth of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

/// The window's length unless [`BudgetLimits::window`] sets another.
pub const MINUTE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Per window (a minute unless `window` says otherwise).
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// The window the limits count over; `None` is a minute.
    pub window: Option<Duration>,
}

impl BudgetLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }

    /// One slot of the window: a sixtieth of it (a second for a minute),
    /// at least a millisecond.
    pub fn slot(&self) -> Duration {
        (self.window.unwrap_or(MINUTE) / 60).max(Duration::from_millis(1))
    }

    /// `slots` slots as a duration.
    pub fn slots(&self, slots: u64) -> Duration {
        self.slot()
            .saturating_mul(u32::try_from(slots).unwrap_or(u32::MAX))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// Spent: ask again after this long.
    Wait(Duration),
}

/// A decision, with what a caller needs for `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    pub grant: Grant,
    /// Requests and tokens the window holds (with this call, if granted).
    pub used_requests: u64,
    pub used_tokens: u64,
    /// Until the oldest use in the window leaves it.
    pub reset: Duration,
}

/// A budget store that could not decide. Callers do not wait on it: a
/// worker calls the provider anyway (its own 429s still stand behind the
/// budget) and the API answers 503.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The store did not answer.
    #[error("budget store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something that is not a decision.
    #[error("budget store answered {0}")]
    Malformed(String),
}

#[async_trait]
pub trait RateBudget: Send + Sync {
    /// Takes `requests` and `tokens` from the budget named `key` if they fit.
    async fn acquire(
        &self,
        key: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
    ) -> Result<Acquired, BudgetError>;

    /// As [`RateBudget::acquire`], the decision alone.
    async fn try_acquire(
        &self,
        key: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
    ) -> Result<Grant, BudgetError> {
        Ok(self.acquire(key, limits, requests, tokens).await?.grant)
    }
}

/// One second of the window: what was granted in it.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    second: u64,
    requests: u64,
    tokens: u64,
}

/// Seconds a slot stays in the window: the slot of second `s` counts until
/// `s + WINDOW_SLOTS`.
const WINDOW_SLOTS: u64 = 61;

/// Decides on a window of slots (oldest first, all within the window at
/// `now`): `None` to grant, or the slots to wait.
fn decide(
    slots: &[Slot],
    now: u64,
    limits: &BudgetLimits,
    requests: u64,
    tokens: u64,
) -> Option<u64> {
    let used_r: u64 = slots.iter().map(|s| s.requests).sum();
    let used_t: u64 = slots.iter().map(|s| s.tokens).sum();
    let over = |used_r: u64, used_t: u64| {
        limits
            .requests_per_minute
            .is_some_and(|l| used_r + requests > l)
            || limits
                .tokens_per_minute
                .is_some_and(|l| used_t > 0 && used_t + tokens > l)
    };
    if !over(used_r, used_t) {
        return None;
    }
    let (mut r, mut t) = (used_r, used_t);
    for slot in slots {
        r -= slot.requests;
        t -= slot.tokens;
        if !over(r, t) {
            return Some((slot.second + WINDOW_SLOTS).saturating_sub(now).max(1));
        }
    }
    Some(WINDOW_SLOTS)
}

/// The budget in one process (unit tests, `sluice dev`).
#[derive(Default)]
pub struct MemoryBudget {
    windows: Mutex<HashMap<String, VecDeque<Slot>>>,
}

impl MemoryBudget {
    /// As [`RateBudget::try_acquire`], at `now` (slots since any epoch:
    /// seconds, with a minute's window).
    pub fn acquire_at(
        &self,
        provider: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
        now: u64,
    ) -> Grant {
        self.acquire_detailed_at(provider, limits, requests, tokens, now)
            .grant
    }

    /// As [`RateBudget::acquire`], at `now` (slots since any epoch).
    pub fn acquire_detailed_at(
        &self,
        provider: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
        now: u64,
    ) -> Acquired {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(provider.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|s| s.second + WINDOW_SLOTS <= now)
        {
            window.pop_front();
        }
        let slots: Vec<Slot> = window.iter().copied().collect();
        let used_requests: u64 = slots.iter().map(|s| s.requests).sum();
        let used_tokens: u64 = slots.iter().map(|s| s.tokens).sum();
        let reset = |oldest: Option<&Slot>| {
            limits.slots(oldest.map_or(WINDOW_SLOTS, |s| s.second + WINDOW_SLOTS - now))
        };
        if let Some(wait) = decide(&slots, now, limits, requests, tokens) {
            return Acquired {
                grant: Grant::Wait(limits.slots(wait)),
                used_requests,
                used_tokens,
                reset: reset(slots.first()),
            };
        }
        match window.back_mut() {
            Some(slot) if slot.second == now => {
                slot.requests += requests;
                slot.tokens += tokens;
            }
            _ => window.push_back(Slot {
                second: now,
                requests,
                tokens,
            }),
        }
        Acquired {
            grant: Grant::Granted,
            used_requests: used_requests + requests,
            used_tokens: used_tokens + tokens,
            reset: reset(window.front()),
        }
    }
}

#[async_trait]
impl RateBudget for MemoryBudget {
    async fn acquire(
        &self,
        key: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
    ) -> Result<Acquired, BudgetError> {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = since_epoch.as_micros() / limits.slot().as_micros().max(1);
        let now = u64::try_from(now).unwrap_or(u64::MAX);
        Ok(self.acquire_detailed_at(key, limits, requests, tokens, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPM: BudgetLimits = BudgetLimits {
        requests_per_minute: Some(3),
        tokens_per_minute: None,
        window: None,
    };

    #[test]
    fn requests_past_the_limit_wait_until_the_window_slides() {
        let b = MemoryBudget::default();
        assert_eq!(b.acquire_at("p", &RPM, 1, 0, 100), Grant::Granted);
        assert_eq!(b.acquire_at("p", &RPM, 1, 0, 110), Grant::Granted);
        assert_eq!(b.acquire_at("p", &RPM, 1, 0, 110), Grant::Granted);
        // Full: the oldest request (second 100) leaves the window at 161,
        // a full minute after the end of its second.
        assert_eq!(
            b.acquire_at("p", &RPM, 1, 0, 120),
            Grant::Wait(Duration::from_secs(41))
        );
        assert_eq!(
            b.acquire_at("p", &RPM, 1, 0, 160),
            Grant::Wait(Duration::from_secs(1))
        );
        assert_eq!(b.acquire_at("p", &RPM, 1, 0, 161), Grant::Granted);
        // Another provider has its own budget.
        assert_eq!(b.acquire_at("q", &RPM, 1, 0, 120), Grant::Granted);
    }

    #[test]
    fn a_shorter_window_counts_in_shorter_slots() {
        // A 6 s window: 100 ms slots.
        let limits = BudgetLimits {
            window: Some(Duration::from_secs(6)),
            ..RPM
        };
        assert_eq!(limits.slot(), Duration::from_millis(100));
        let b = MemoryBudget::default();
        for _ in 0..3 {
            assert_eq!(b.acquire_at("p", &limits, 1, 0, 1_000), Grant::Granted);
        }
        // Full until slot 1,061: 6.1 s (61 slots) after the grants.
        assert_eq!(
            b.acquire_at("p", &limits, 1, 0, 1_010),
            Grant::Wait(Duration::from_millis(5_100))
        );
        assert_eq!(b.acquire_at("p", &limits, 1, 0, 1_061), Grant::Granted);
    }

    #[test]
    fn a_decision_says_what_is_used_and_when_it_resets() {
        let b = MemoryBudget::default();
        let a = b.acquire_detailed_at("p", &RPM, 1, 5, 100);
        assert_eq!(
            (a.grant, a.used_requests, a.used_tokens),
            (Grant::Granted, 1, 5)
        );
        assert_eq!(a.reset, Duration::from_secs(61));
        b.acquire_detailed_at("p", &RPM, 2, 0, 110);
        let refused = b.acquire_detailed_at("p", &RPM, 1, 0, 120);
        assert_eq!(refused.grant, Grant::Wait(Duration::from_secs(41)));
        assert_eq!(
            (refused.used_requests, refused.reset),
            (3, Duration::from_secs(41))
        );
    }

    #[test]
    fn tokens_count_and_a_huge_call_is_not_starved() {
        let tpm = BudgetLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(1000),
            window: None,
        };
        let b = MemoryBudget::default();
        assert_eq!(b.acquire_at("p", &tpm, 1, 600, 0), Grant::Granted);
        assert_eq!(
            b.acquire_at("p", &tpm, 1, 600, 1),
            Grant::Wait(Duration::from_secs(60))
        );
        assert_eq!(b.acquire_at("p", &tpm, 1, 400, 1), Grant::Granted);
        // Bigger than the whole limit: granted once the window is empty.
        assert!(matches!(
            b.acquire_at("p", &tpm, 1, 5000, 30),
            Grant::Wait(_)
        ));
        assert_eq!(b.acquire_at("p", &tpm, 1, 5000, 62), Grant::Granted);
    }

    #[test]
    fn in_any_minute_the_grants_stay_within_the_limit() {
        let limits = BudgetLimits {
            requests_per_minute: Some(50),
            tokens_per_minute: Some(5_000),
            window: None,
        };
        let b = MemoryBudget::default();
        let mut granted: Vec<(u64, u64)> = Vec::new();
        for t in 0..300u64 {
            for k in 0..5 {
                let tokens = 50 + (t * 7 + k * 13) % 200;
                if b.acquire_at("p", &limits, 1, tokens, t) == Grant::Granted {
                    granted.push((t, tokens));
                }
            }
        }
        for start in 0..240 {
            let in_window: Vec<_> = granted
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + 60)
                .collect();
            assert!(in_window.len() <= 50);
            assert!(in_window.iter().map(|(_, k)| k).sum::<u64>() <= 5_000);
        }
        // And the budget is used, not wasted: the binding limit here is
        // tokens, and 5 minutes grant at least 90% of 5 × 5,000.
        let tokens: u64 = granted.iter().map(|(_, k)| k).sum();
        assert!(tokens >= 22_500, "{tokens}");
    }
}
