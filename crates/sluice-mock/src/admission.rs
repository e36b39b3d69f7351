//! Whether a valid real-time `/v1` request is served: for a flex request,
//! flex capacity first (429 `resource_unavailable`, see
//! [`flex`](crate::flex)); then the rate limits (429), then fault
//! injection (500/503 or a stall). Runs after validation, so a malformed
//! request is a 400 whatever the limits; the down switch is checked before
//! everything else, by `routes::down`. Batch lines are not admitted here:
//! they answer to the batch knobs alone (see `batches`).

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use crate::bill::Refusal;
use crate::error::ApiError;
use crate::faults::Fate;
use crate::limits::{ceil_secs, Exceeded, Limited, Quota};
use crate::pricing::Tier;
use crate::state::Shared;

/// A request that may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    /// Its sequence number, which seeds its jitter (see `dice`).
    pub(crate) sequence: u64,
    /// What is left of the rate limits, when there are any.
    pub(crate) quota: Option<Quota>,
    /// How long it stalls, if it does.
    pub(crate) stall: Option<Duration>,
    /// The tier it is served on, standard or flex.
    pub(crate) tier: Tier,
}

impl Shared {
    /// Admits a request for `model` on `tier` (standard or flex) whose
    /// token estimate (prompt plus maximum completion) is
    /// `estimated_tokens`, or answers the error it gets instead, counted
    /// but not billed.
    pub(crate) fn admit(
        &self,
        model: &str,
        estimated_tokens: u64,
        tier: Tier,
    ) -> Result<Admission, ApiError> {
        let options = self.options();
        if tier == Tier::Flex
            && options
                .flex
                .turns_away(options.seed, self.next_flex_sequence())
        {
            self.refused(Refusal::FlexUnavailable);
            return Err(ApiError::flex_unavailable());
        }
        let decision = self.limiter().admit(
            &options.rate_limits,
            model,
            estimated_tokens,
            Instant::now(),
        );
        let quota = match decision {
            None => None,
            Some(Ok(quota)) => Some(quota),
            Some(Err(limited)) => {
                self.refused(Refusal::RateLimited);
                return Err(rate_limited(model, estimated_tokens, &limited));
            }
        };
        let sequence = self.next_sequence();
        match options.faults.fate(options.seed, sequence) {
            Fate::Fail(status) => {
                self.refused(Refusal::Injected);
                let headers = quota.as_ref().map(quota_headers).unwrap_or_default();
                Err(ApiError::injected(status).with_headers(headers))
            }
            Fate::Stall(stall) => Ok(Admission {
                sequence,
                quota,
                stall: Some(stall),
                tier,
            }),
            Fate::Serve => Ok(Admission {
                sequence,
                quota,
                stall: None,
                tier,
            }),
        }
    }
}

fn rate_limited(model: &str, requested_tokens: u64, limited: &Limited) -> ApiError {
    let quota = &limited.quota;
    let (kind, unit, limit, remaining, requested) = match limited.exceeded {
        Exceeded::Requests => (
            "requests",
            "requests per min (RPM)",
            quota.limits.requests_per_minute.unwrap_or(0),
            quota.remaining_requests,
            1,
        ),
        Exceeded::Tokens => (
            "tokens",
            "tokens per min (TPM)",
            quota.limits.tokens_per_minute.unwrap_or(0),
            quota.remaining_tokens,
            requested_tokens,
        ),
    };
    let used = limit.saturating_sub(remaining);
    let retry = limited.retry_after_secs;
    let message = format!(
        "Rate limit reached for {model} on {unit}: Limit {limit}, Used {used}, \
         Requested {requested}. Please try again in {retry}s."
    );
    let mut headers = quota_headers(quota);
    headers.insert(RETRY_AFTER, HeaderValue::from(retry));
    headers.insert(
        HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(limited.retry_after_ms),
    );
    ApiError::rate_limited(kind, message).with_headers(headers)
}

/// The `x-ratelimit-*` headers OpenAI sends, for the limits that are set:
/// `limit`, `remaining` and `reset` (whole seconds until the window is
/// empty, as `"12s"`) for requests and for tokens.
pub(crate) fn quota_headers(quota: &Quota) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let reset = format!("{}s", ceil_secs(quota.reset));
    let mut put = |name: &'static str, value: HeaderValue| {
        headers.insert(HeaderName::from_static(name), value);
    };
    let reset_value = HeaderValue::from_str(&reset).unwrap_or(HeaderValue::from_static("0s"));
    if let Some(rpm) = quota.limits.requests_per_minute {
        put("x-ratelimit-limit-requests", HeaderValue::from(rpm));
        put(
            "x-ratelimit-remaining-requests",
            HeaderValue::from(quota.remaining_requests),
        );
        put("x-ratelimit-reset-requests", reset_value.clone());
    }
    if let Some(tpm) = quota.limits.tokens_per_minute {
        put("x-ratelimit-limit-tokens", HeaderValue::from(tpm));
        put(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from(quota.remaining_tokens),
        );
        put("x-ratelimit-reset-tokens", reset_value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RateLimits;

    #[test]
    fn headers_cover_the_limits_that_are_set() {
        let quota = Quota {
            limits: RateLimits {
                requests_per_minute: Some(10),
                tokens_per_minute: None,
                ..RateLimits::default()
            },
            remaining_requests: 3,
            remaining_tokens: 0,
            reset: Duration::from_millis(1_500),
        };
        let headers = quota_headers(&quota);
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "3");
        assert_eq!(headers["x-ratelimit-reset-requests"], "2s");
        assert!(headers.get("x-ratelimit-limit-tokens").is_none());
    }
}
