//! `[webhooks]`: how the webhooks role delivers.

use serde::Deserialize;

/// How the webhooks role delivers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Seconds to wait before each attempt, the first included: one
    /// attempt per entry. The Standard Webhooks schedule by default.
    pub schedule_s: Vec<f64>,
    /// Seconds one attempt may take (connect, send, read the answer).
    pub attempt_timeout_s: f64,
    /// Bytes of a receiver's answer read (and kept) at most.
    pub max_response_bytes: usize,
    /// Networks (`127.0.0.0/8`, `::1`) and host names that webhooks may
    /// reach although they are loopback, private, link-local or metadata.
    pub allow: Vec<String>,
    /// Attempts one webhooks process makes at once (its prefetch).
    pub concurrency: u16,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            schedule_s: vec![0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            attempt_timeout_s: 15.0,
            max_response_bytes: 4096,
            allow: Vec::new(),
            concurrency: 64,
        }
    }
}

impl WebhooksConfig {
    /// The allowlist, parsed (validation has checked every entry).
    pub fn policy(&self) -> crate::webhook_address::AddressPolicy {
        crate::webhook_address::AddressPolicy {
            allow: self
                .allow
                .iter()
                .filter_map(|a| crate::webhook_address::Allowed::parse(a).ok())
                .collect(),
        }
    }

    /// The wait before attempt `step` (0-based), in milliseconds.
    pub fn delay_ms(&self, step: usize) -> Option<u64> {
        self.schedule_s
            .get(step)
            .map(|s| (s * 1000.0).round() as u64)
    }

    /// Every distinct non-zero wait of the schedule, in milliseconds,
    /// ascending: one delay queue each.
    pub fn delays_ms(&self) -> Vec<u64> {
        let mut all: Vec<u64> = (0..self.schedule_s.len())
            .filter_map(|i| self.delay_ms(i))
            .filter(|d| *d > 0)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.schedule_s.is_empty() {
            return Err("webhooks: schedule_s needs at least one entry".into());
        }
        if let Some(bad) = self
            .schedule_s
            .iter()
            .find(|s| !s.is_finite() || **s < 0.0 || **s > 7.0 * 86_400.0)
        {
            return Err(format!(
                "webhooks: schedule_s entries must be 0 to 604800 seconds (got {bad})"
            ));
        }
        if !(self.attempt_timeout_s.is_finite() && self.attempt_timeout_s > 0.0) {
            return Err("webhooks: attempt_timeout_s must be above 0".into());
        }
        if self.max_response_bytes == 0 || self.concurrency == 0 {
            return Err("webhooks: max_response_bytes and concurrency must be above 0".into());
        }
        for (i, a) in self.allow.iter().enumerate() {
            crate::webhook_address::Allowed::parse(a)
                .map_err(|e| format!("webhooks: allow[{i}]: {e}"))?;
        }
        Ok(())
    }
}
