//! The fleet-wide provider budget in Redis: one hash per provider
//! (`P:budget:{provider}`), changed only by one script (`lua/budget.lua`)
//! on the server's clock, so every worker sees the same window.

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use sluice_core::budget::{BudgetLimits, Grant, RateBudget};

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
    async fn try_acquire(
        &self,
        provider: &str,
        limits: &BudgetLimits,
        requests: u64,
        tokens: u64,
    ) -> Result<Grant, String> {
        if limits.is_unlimited() {
            return Ok(Grant::Granted);
        }
        let key = format!("{}:budget:{{{provider}}}", self.prefix);
        let args = vec![
            requests,
            tokens,
            limits.requests_per_minute.unwrap_or(0),
            limits.tokens_per_minute.unwrap_or(0),
        ];
        let reply: Vec<u64> = self
            .script
            .evalsha_with_reload(self.pool.next(), vec![key], args)
            .await
            .map_err(|e| e.to_string())?;
        match reply.as_slice() {
            [1, _] => Ok(Grant::Granted),
            [0, wait] => Ok(Grant::Wait(Duration::from_secs(*wait))),
            other => Err(format!("budget script answered {other:?}")),
        }
    }
}
