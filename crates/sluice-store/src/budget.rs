//! Fleet-wide budgets in Redis (providers' limits, and tenants' as
//! `tenant:ID`): one hash per name (`P:budget:{name}`), changed only by one script (`lua/budget.lua`)
//! on the server's clock, so every worker sees the same window.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use sluice_core::budget::{Acquired, BudgetError, BudgetLimits, Grant, RateBudget};

pub struct RedisBudget {
    pool: Pool,
    prefix: String,
    script: Script,
}

impl RedisBudget {
    pub(crate) fn new(pool: Pool, prefix: String) -> Self {
        Self {
            pool,
            prefix,
            script: Script::from_lua(include_str!("jobs/lua/budget.lua")),
        }
    }
}

#[async_trait]
impl RateBudget for RedisBudget {
    async fn acquire(
        &self,
        name: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
    ) -> Result<Acquired, BudgetError> {
        if limits.is_unlimited() {
            return Ok(Acquired {
                grant: Grant::Granted,
                used_requests: 0,
                used_tokens: 0,
                reset: Duration::ZERO,
            });
        }
        let key = format!("{}:budget:{{{name}}}", self.prefix);
        let slot_us = u64::try_from(limits.slot().as_micros()).unwrap_or(u64::MAX);
        let args = vec![
            requests,
            tokens,
            limits.requests_per_minute.unwrap_or(0),
            limits.tokens_per_minute.unwrap_or(0),
            slot_us,
        ];
        let reply: Vec<u64> = self
            .script
            .evalsha_with_reload(self.pool.next(), vec![key], args)
            .await
            .map_err(|e| BudgetError::Unavailable(e.to_string()))?;
        let (grant, used_requests, used_tokens, reset) = match reply.as_slice() {
            [1, _, r, t, reset] => (Grant::Granted, *r, *t, *reset),
            [0, wait, r, t, reset] => (Grant::Wait(limits.slots(*wait)), *r, *t, *reset),
            other => return Err(BudgetError::Malformed(format!("{other:?}"))),
        };
        Ok(Acquired {
            grant,
            used_requests,
            used_tokens,
            reset: limits.slots(reset),
        })
    }
}
