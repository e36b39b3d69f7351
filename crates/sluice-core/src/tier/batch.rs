//! A provider's Batch API as a tier (`[providers.batch]`): which models
//! take it, how much of a deadline it needs, how big a batch grows, and
//! how often its batches are looked at.

use std::time::Duration;

use serde::Deserialize;

/// `[providers.batch]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The model names the provider knows (as in `[[prices]]`) that go out
    /// in batches; empty: every model.
    pub models: Vec<String>,
    /// A job goes into a provider batch only if it has at least this long
    /// before its deadline when a worker takes it.
    pub min_deadline_s: u64,
    /// Time kept before a job's deadline for a call in real time: a batch
    /// not finished by its jobs' earliest deadline less this is hedged (its
    /// unanswered jobs go back to the queue, and it is cancelled).
    pub realtime_margin_s: u64,
    /// Most lines in one batch (the provider's own limit is higher).
    pub max_lines: usize,
    /// Most bytes of requests in one batch.
    pub max_bytes: u64,
    /// How long a batch takes jobs before it is submitted.
    pub collect_s: u64,
    /// How often a worker looks at the batches it holds.
    pub poll_s: u64,
    /// How long a worker holds a batch without renewing its lease; a
    /// batch whose worker died is taken over this long after its last poll.
    pub lease_s: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            min_deadline_s: 3_600,
            realtime_margin_s: 900,
            max_lines: 10_000,
            max_bytes: 100 * 1024 * 1024,
            collect_s: 60,
            poll_s: 30,
            lease_s: 120,
        }
    }
}

impl BatchConfig {
    /// Whether `model` (the provider's name for it) goes out in batches.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    /// Whether a job for `model` whose deadline is `slack` away goes into
    /// a provider batch.
    pub fn takes(&self, model: &str, slack: Option<Duration>) -> bool {
        slack.is_some_and(|s| s >= Duration::from_secs(self.min_deadline_s)) && self.serves(model)
    }

    pub fn realtime_margin(&self) -> Duration {
        Duration::from_secs(self.realtime_margin_s)
    }

    /// Why this table cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_lines == 0 || self.max_bytes == 0 || self.poll_s == 0 {
            return Err("batch.max_lines, batch.max_bytes and batch.poll_s must be above 0".into());
        }
        if self.min_deadline_s <= self.realtime_margin_s {
            return Err(format!(
                "batch.min_deadline_s ({}) must be above batch.realtime_margin_s ({}): a batch needs time of its own before the margin",
                self.min_deadline_s, self.realtime_margin_s
            ));
        }
        if self.lease_s < 2 * self.poll_s {
            return Err(format!(
                "batch.lease_s ({}) must be at least twice batch.poll_s ({}): a live worker renews its lease every poll",
                self.lease_s, self.poll_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_needs_the_minimum_deadline_and_a_served_model() {
        let c = BatchConfig {
            models: vec!["m".into()],
            ..BatchConfig::default()
        };
        let hour = Some(Duration::from_secs(3_600));
        assert!(c.takes("m", hour));
        assert!(!c.takes("other", hour));
        assert!(!c.takes("m", Some(Duration::from_secs(3_599))));
        assert!(!c.takes("m", None));
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let margin = BatchConfig {
            min_deadline_s: 600,
            realtime_margin_s: 600,
            ..BatchConfig::default()
        };
        assert!(margin.validate().unwrap_err().contains("realtime_margin_s"));
        let lease = BatchConfig {
            poll_s: 30,
            lease_s: 40,
            ..BatchConfig::default()
        };
        assert!(lease.validate().unwrap_err().contains("lease_s"));
        assert!(BatchConfig::default().validate().is_ok());
    }
}
