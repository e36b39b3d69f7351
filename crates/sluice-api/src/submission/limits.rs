//! Stage 6, limits: the tenant's jobs and estimated tokens per minute,
//! shared by every API replica through the fleet budget (key
//! `tenant:<id>`). One tenant over its limit is refused; other tenants'
//! budgets are their own.
//!
//! Refuses: 429 (`rate-limited`, with `Retry-After` and `RateLimit-*`);
//! 503 when the budget store fails. Writes: the jobs and tokens taken
//! from the tenant's sliding minute.

use sluice_core::budget::{Acquired, BudgetLimits, Grant};
use sluice_store::tenants::Principal;

use crate::problem::{ApiError, RateLimitHeaders};
use crate::state::AppState;

/// The limits that apply to `caller`: its own, else the config's defaults.
fn limits_of(state: &AppState, caller: &Principal) -> BudgetLimits {
    BudgetLimits {
        requests_per_minute: caller
            .requests_per_minute
            .or(state.config.tenants.requests_per_minute),
        tokens_per_minute: caller
            .tokens_per_minute
            .or(state.config.tenants.tokens_per_minute),
        window: None,
    }
}

/// The headers for a decision: the job limit when there is one (or the
/// token limit when only it is set, or when it is what refused).
fn headers(limits: &BudgetLimits, a: &Acquired, jobs: u64, tokens: u64) -> RateLimitHeaders {
    let jobs_over = limits
        .requests_per_minute
        .is_some_and(|l| a.used_requests + jobs > l);
    let tokens_over = limits
        .tokens_per_minute
        .is_some_and(|l| a.used_tokens + tokens > l);
    let refused = a.grant != Grant::Granted;
    let use_tokens = limits.requests_per_minute.is_none() || (refused && tokens_over && !jobs_over);
    let (limit, used) = if use_tokens {
        (limits.tokens_per_minute.unwrap_or(0), a.used_tokens)
    } else {
        (limits.requests_per_minute.unwrap_or(0), a.used_requests)
    };
    RateLimitHeaders {
        limit,
        remaining: limit.saturating_sub(used),
        reset_s: a.reset.as_secs(),
    }
}

/// Takes `jobs` jobs and `tokens` tokens from the caller's budget; the
/// headers to answer with, or a 429.
pub async fn admit(
    state: &AppState,
    caller: &Principal,
    jobs: u64,
    tokens: u64,
) -> Result<Option<RateLimitHeaders>, ApiError> {
    let limits = limits_of(state, caller);
    if limits.is_unlimited() {
        return Ok(None);
    }
    let key = format!("tenant:{}", caller.tenant_id);
    let acquired = state
        .limiter
        .acquire(&key, &limits, jobs, tokens)
        .await
        .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
    let headers = headers(&limits, &acquired, jobs, tokens);
    match acquired.grant {
        Grant::Granted => Ok(Some(headers)),
        Grant::Wait(wait) => {
            let detail = match limits.requests_per_minute {
                Some(l) if jobs > l => format!(
                    "{jobs} jobs at once are more than this tenant's limit of {l} jobs per minute; submit fewer at a time"
                ),
                _ => format!(
                    "tenant {:?} is over its rate limit ({}); retry in {} s",
                    caller.tenant_name,
                    describe(&limits),
                    wait.as_secs()
                ),
            };
            Err(ApiError::RateLimited {
                detail,
                headers,
                retry_after_s: wait.as_secs().max(1),
            })
        }
    }
}

fn describe(limits: &BudgetLimits) -> String {
    let mut parts = Vec::new();
    if let Some(r) = limits.requests_per_minute {
        parts.push(format!("{r} jobs per minute"));
    }
    if let Some(t) = limits.tokens_per_minute {
        parts.push(format!("{t} tokens per minute"));
    }
    parts.join(", ")
}
