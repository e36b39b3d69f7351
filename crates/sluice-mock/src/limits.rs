//! Rate limits: requests and tokens per minute, per model, as OpenAI sets
//! them.
//!
//! The window slides: a request is admitted at time `t` when the requests
//! admitted for its model during `(t − W, t]`, plus itself, stay within
//! `requests_per_minute`, and their token estimates plus its own stay within
//! `tokens_per_minute`. A request's token estimate is its prompt tokens
//! plus the completion tokens it may produce (`max_tokens × n × prompts`),
//! known before it runs, as OpenAI counts. A refused request answers 429
//! with `Retry-After`: the whole seconds (rounded up, at least 1) until
//! enough admitted requests leave the window for it to fit, and
//! `retry-after-ms`, the same wait in milliseconds (rounded up, at least
//! 1). A request whose estimate alone exceeds `tokens_per_minute` never
//! fits; it is refused with a wait of the whole window. Refused requests
//! are not recorded.
//!
//! `W` is a minute unless [`RateLimits::window_ms`] says otherwise: a
//! benchmark that scales the mock's time by `s` shrinks the window to
//! `s` minutes, and the limits then count per scaled minute.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tokio::time::Instant;

/// The window length in milliseconds, unless [`RateLimits::window_ms`]
/// sets another: a minute.
const WINDOW_MS: NonZeroU64 = match NonZeroU64::new(60_000) {
    Some(ms) => ms,
    None => panic!("60 000 is not zero"),
};

/// The window length, unless [`RateLimits::window_ms`] sets another.
pub const WINDOW: Duration = Duration::from_millis(WINDOW_MS.get());

/// `[rate_limits]` and their flags: limits per model per window (a minute
/// by default); `None` is no limit. [`Default`] has none.
#[derive(Args, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Rate limits")]
pub struct RateLimits {
    /// Requests per minute per model, over a sliding window; past it, 429
    /// with Retry-After. Unlimited when not given.
    #[arg(long)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute per model (prompt + max_tokens × choices), over a
    /// sliding window. Unlimited when not given.
    #[arg(long)]
    pub tokens_per_minute: Option<u64>,
    /// The length of the limits' window, in milliseconds (benchmarks shrink
    /// the minute with their time scale).
    #[arg(long = "rate-window-ms", value_name = "MS", default_value_t = WINDOW_MS)]
    pub window_ms: NonZeroU64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            requests_per_minute: None,
            tokens_per_minute: None,
            window_ms: WINDOW_MS,
        }
    }
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }

    /// The window the limits count over.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.get())
    }
}

/// What is left of the limits after a decision, for the
/// `x-ratelimit-*` headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) limits: RateLimits,
    pub(crate) remaining_requests: u64,
    pub(crate) remaining_tokens: u64,
    /// Until the window holds no admitted request of this model.
    pub(crate) reset: Duration,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Requests,
    Tokens,
}

/// A refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) exceeded: Exceeded,
    /// Whole seconds, at least 1.
    pub(crate) retry_after_secs: u64,
    /// Whole milliseconds, at least 1.
    pub(crate) retry_after_ms: u64,
    pub(crate) quota: Quota,
}

#[derive(Debug, Default)]
struct Window {
    /// Admission time and token estimate, oldest first.
    admitted: VecDeque<(Instant, u64)>,
    tokens: u64,
}

impl Window {
    fn slide(&mut self, now: Instant, length: Duration) {
        while let Some(&(at, tokens)) = self.admitted.front() {
            if at + length > now {
                break;
            }
            self.admitted.pop_front();
            self.tokens = self.tokens.saturating_sub(tokens);
        }
    }

    /// How long until the `count` oldest entries have left the window.
    fn wait_for(&self, count: usize, now: Instant, length: Duration) -> Duration {
        match count.checked_sub(1).and_then(|i| self.admitted.get(i)) {
            Some(&(at, _)) => (at + length).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    fn quota(&self, limits: &RateLimits, now: Instant) -> Quota {
        Quota {
            limits: limits.clone(),
            remaining_requests: limits
                .requests_per_minute
                .map_or(0, |rpm| rpm.saturating_sub(self.admitted.len() as u64)),
            remaining_tokens: limits
                .tokens_per_minute
                .map_or(0, |tpm| tpm.saturating_sub(self.tokens)),
            reset: self.wait_for(self.admitted.len(), now, limits.window()),
        }
    }
}

/// The windows of every model. Not thread-safe by itself; the server holds
/// it in a mutex.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    windows: HashMap<String, Window>,
}

impl RateLimiter {
    /// Admits (and records) a request of `model` estimated at `tokens`, or
    /// says why not. `None` when there are no limits at all.
    pub(crate) fn admit(
        &mut self,
        limits: &RateLimits,
        model: &str,
        tokens: u64,
        now: Instant,
    ) -> Option<Result<Quota, Limited>> {
        if limits.is_unlimited() {
            return None;
        }
        let length = limits.window();
        let window = self.windows.entry(model.to_owned()).or_default();
        window.slide(now, length);
        let mut wait: Option<(Exceeded, Duration)> = None;
        if let Some(rpm) = limits.requests_per_minute {
            let used = window.admitted.len() as u64;
            if used.saturating_add(1) > rpm {
                let must_leave =
                    usize::try_from(used.saturating_add(1) - rpm).unwrap_or(usize::MAX);
                let wait_requests = if rpm == 0 {
                    length
                } else {
                    window.wait_for(must_leave, now, length)
                };
                wait = Some((Exceeded::Requests, wait_requests));
            }
        }
        if let Some(tpm) = limits.tokens_per_minute {
            if window.tokens.saturating_add(tokens) > tpm {
                let wait_tokens = if tokens > tpm {
                    length
                } else {
                    let excess = window.tokens.saturating_add(tokens) - tpm;
                    let mut freed = 0u64;
                    let leave = window
                        .admitted
                        .iter()
                        .take_while(|&&(_, t)| {
                            let short = freed < excess;
                            freed = freed.saturating_add(t);
                            short
                        })
                        .count();
                    window.wait_for(leave, now, length)
                };
                if wait.is_none_or(|(_, w)| wait_tokens > w) {
                    wait = Some((Exceeded::Tokens, wait_tokens));
                }
            }
        }
        if let Some((exceeded, wait)) = wait {
            return Some(Err(Limited {
                exceeded,
                retry_after_secs: ceil_secs(wait).max(1),
                retry_after_ms: ceil_millis(wait).max(1),
                quota: window.quota(limits, now),
            }));
        }
        window.admitted.push_back((now, tokens));
        window.tokens = window.tokens.saturating_add(tokens);
        Some(Ok(window.quota(limits, now)))
    }

    pub(crate) fn clear(&mut self) {
        self.windows.clear();
    }
}

/// Whole milliseconds, rounded up.
pub(crate) fn ceil_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> RateLimits {
        RateLimits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            ..RateLimits::default()
        }
    }

    #[test]
    fn no_limits_admit_everything_untracked() {
        let mut limiter = RateLimiter::default();
        assert_eq!(
            limiter.admit(&RateLimits::default(), "m", 1 << 40, Instant::now()),
            None
        );
    }

    #[test]
    fn requests_per_minute_slides() {
        let mut limiter = RateLimiter::default();
        let l = limits(Some(2), None);
        let t0 = Instant::now();
        let ok = |r: Option<Result<Quota, Limited>>| r.and_then(Result::ok);
        assert_eq!(
            ok(limiter.admit(&l, "m", 1, t0)).map(|q| q.remaining_requests),
            Some(1)
        );
        let later = t0 + Duration::from_millis(10_500);
        assert!(ok(limiter.admit(&l, "m", 1, later)).is_some());
        let refused = limiter
            .admit(&l, "m", 1, later)
            .and_then(Result::err)
            .unwrap();
        assert_eq!(refused.exceeded, Exceeded::Requests);
        // The first leaves at 60 s: 49.5 s from now, rounded up.
        assert_eq!(refused.retry_after_secs, 50);
        assert_eq!(refused.retry_after_ms, 49_500);
        // Other models have their own window.
        assert!(ok(limiter.admit(&l, "other", 1, later)).is_some());
        assert!(ok(limiter.admit(&l, "m", 1, t0 + WINDOW)).is_some());
        assert!(limiter.admit(&l, "m", 1, t0 + WINDOW).unwrap().is_err());
    }

    #[test]
    fn tokens_per_minute_waits_for_enough_tokens_to_leave() {
        let mut limiter = RateLimiter::default();
        let l = limits(None, Some(100));
        let t0 = Instant::now();
        for (secs, tokens) in [(0, 30), (10, 30), (20, 30)] {
            let at = t0 + Duration::from_secs(secs);
            assert!(limiter.admit(&l, "m", tokens, at).unwrap().is_ok());
        }
        // 90 used; 50 more needs 40 to leave: the first two, at 70 s.
        let at = t0 + Duration::from_secs(30);
        let refused = limiter.admit(&l, "m", 50, at).unwrap().unwrap_err();
        assert_eq!(refused.exceeded, Exceeded::Tokens);
        assert_eq!(refused.retry_after_secs, 40);
        assert_eq!(refused.quota.remaining_tokens, 10);
        // Too large ever to fit.
        let refused = limiter.admit(&l, "m", 101, at).unwrap().unwrap_err();
        assert_eq!(refused.retry_after_secs, 60);
        assert!(limiter.admit(&l, "m", 10, at).unwrap().is_ok());
        limiter.clear();
        assert!(limiter.admit(&l, "m", 100, at).unwrap().is_ok());
    }

    #[test]
    fn a_shorter_window_slides_sooner() {
        let mut limiter = RateLimiter::default();
        let l = RateLimits {
            window_ms: NonZeroU64::new(600).unwrap(),
            ..limits(Some(1), None)
        };
        let t0 = Instant::now();
        assert!(limiter.admit(&l, "m", 1, t0).unwrap().is_ok());
        let at = t0 + Duration::from_micros(250_500);
        let refused = limiter.admit(&l, "m", 1, at).unwrap().unwrap_err();
        // 349.5 ms left: rounded up to 350 ms, and to 1 s.
        assert_eq!((refused.retry_after_ms, refused.retry_after_secs), (350, 1));
        assert!(limiter
            .admit(&l, "m", 1, t0 + Duration::from_millis(600))
            .unwrap()
            .is_ok());
    }

    #[test]
    fn zero_limit_refuses_with_a_full_window() {
        let mut limiter = RateLimiter::default();
        let refused = limiter
            .admit(&limits(Some(0), None), "m", 1, Instant::now())
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.retry_after_secs, 60);
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(ceil_millis(Duration::from_millis(7)), 7);
    }
}
