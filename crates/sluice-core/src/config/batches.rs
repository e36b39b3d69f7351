//! The `[batches]` table: how the Batch API (`/v1/batches`) is driven, and
//! how much a tenant may have queued in batches.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchesConfig {
    /// Most estimated prompt tokens a tenant may have in batches in
    /// progress (OpenAI's enqueued token limit); a batch that would pass
    /// it fails validation with `token_limit_exceeded`. None: no limit.
    pub queue_tokens: Option<u64>,
    /// How often an API process looks at the batches it drives, in ms.
    pub poll_ms: u64,
    /// How long a driver's lease on a batch lasts without renewal, in
    /// seconds: a killed API process's batches are taken over after it.
    pub lease_s: u64,
    /// How long the one completion window callers name, `24h`, lasts here,
    /// in seconds (shorter only for drills and tests of expiry).
    pub window_s: u64,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            queue_tokens: None,
            poll_ms: 1000,
            lease_s: 60,
            window_s: 86_400,
        }
    }
}

impl BatchesConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.poll_ms == 0 || self.lease_s == 0 || self.window_s == 0 {
            return Err("batches: poll_ms, lease_s and window_s must be above 0".into());
        }
        if self.lease_s * 1000 <= self.poll_ms * 2 {
            return Err("batches: lease_s must be longer than two polls (poll_ms)".into());
        }
        Ok(())
    }

    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_ms)
    }

    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_s)
    }
}
