//! Which jobs go out in a provider batch, and where: the one rule.
//!
//! A job goes into a provider batch when all of these hold:
//! - it may wait (it has a deadline) and has not come back from a batch
//!   already (`rerouted`);
//! - its caller did not choose a `service_tier` of their own;
//! - its model's route starts with a provider that has `[providers.batch]`
//!   for the model, and the deadline is at least `batch.min_deadline_s`
//!   away;
//! - that provider's Batch API can express the request (its line builds).
//!
//! Every other job goes to the micro-batcher and out in real time (or
//! flex), as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_core::config::Config;
use sluice_core::metrics::Metrics;
use sluice_core::tier::BatchConfig;
use sluice_core::{Endpoint, JobMessage};
use sluice_providers::batch::{batch_api, BatchApi, BatchLine};
use sluice_providers::{ProviderError, SetupError};
use sluice_store::provider_batches::BatchTarget;

/// Bytes a line takes beyond its body (OpenAI's JSONL line carries the
/// `custom_id`, method and URL; Anthropic's its `custom_id`).
const LINE_OVERHEAD: u64 = 128;

/// A provider's Batch API for one model (the name callers use).
pub struct Target {
    pub provider: String,
    pub model: String,
    /// The model name the provider knows.
    pub upstream: String,
    pub api: Arc<dyn BatchApi>,
    pub config: BatchConfig,
}

impl Target {
    /// The line of `message`'s job in this target's batches.
    pub fn line(&self, message: &JobMessage) -> Result<BatchLine, ProviderError> {
        self.api.line(
            message.endpoint,
            &self.upstream,
            &message.id.to_string(),
            &message.body,
        )
    }

    /// The record's name for this target's batches of `endpoint`.
    pub fn key(&self, endpoint: Endpoint) -> BatchTarget {
        BatchTarget {
            provider: self.provider.clone(),
            model: self.model.clone(),
            endpoint,
        }
    }
}

/// Where a job goes: its target, the bytes of its line, and when its
/// batch must be hedged at the latest.
#[derive(Clone)]
pub struct Planned {
    pub target: Arc<Target>,
    pub bytes: u64,
    pub hedge_at: DateTime<Utc>,
}

/// Every model whose route starts with a provider that sells batches.
#[derive(Default)]
pub struct Targets {
    by_model: HashMap<String, Arc<Target>>,
}

impl Targets {
    /// The targets `config` makes (none: provider batches are off).
    pub fn from_config(config: &Config, metrics: &Arc<Metrics>) -> Result<Self, SetupError> {
        let mut apis: HashMap<&str, (Arc<dyn BatchApi>, &BatchConfig)> = HashMap::new();
        for p in &config.providers {
            if let Some(batch) = &p.batch {
                apis.insert(&p.name, (batch_api(config, p, Arc::clone(metrics))?, batch));
            }
        }
        let mut by_model = HashMap::new();
        for m in &config.models {
            let Some(first) = m.providers.first() else {
                continue;
            };
            let upstream = m.upstream_model.clone().unwrap_or_else(|| m.name.clone());
            let Some((api, batch)) = apis.get(first.as_str()) else {
                continue;
            };
            if batch.serves(&upstream) {
                let target = Target {
                    provider: first.clone(),
                    model: m.name.clone(),
                    upstream,
                    api: Arc::clone(api),
                    config: (*batch).clone(),
                };
                by_model.insert(m.name.clone(), Arc::new(target));
            }
        }
        Ok(Self { by_model })
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    /// The shortest poll interval and lease of any target.
    pub fn poll_and_lease(&self) -> Option<(Duration, Duration)> {
        let poll = self.by_model.values().map(|t| t.config.poll_s).min()?;
        let lease = self.by_model.values().map(|t| t.config.lease_s).min()?;
        Some((Duration::from_secs(poll), Duration::from_secs(lease)))
    }

    /// The target of a recorded batch, if the config still has it.
    pub fn get(&self, key: &BatchTarget) -> Option<&Arc<Target>> {
        self.by_model
            .get(&key.model)
            .filter(|t| t.provider == key.provider)
    }

    /// Where `message`'s job goes if it goes into a provider batch.
    pub fn plan(&self, message: &JobMessage, now: DateTime<Utc>) -> Option<Planned> {
        // A caller reading a stream waits on its connection: never hours.
        let deadline = message
            .deadline_at
            .filter(|_| !message.rerouted && !message.stream)?;
        if message.body.get("service_tier").is_some() {
            return None;
        }
        let target = self.by_model.get(&message.model)?;
        let slack = (deadline - now).to_std().ok();
        if !target.config.takes(&target.upstream, slack) {
            return None;
        }
        let line = target.line(message).ok()?;
        let body = serde_json::to_vec(&line.body).ok()?;
        let margin = chrono::Duration::from_std(target.config.realtime_margin()).ok()?;
        Some(Planned {
            target: Arc::clone(target),
            bytes: body.len() as u64 + LINE_OVERHEAD,
            hedge_at: deadline - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_core::{Endpoint, JobId};

    const CONFIG: &str = r#"
[[providers]]
name = "sells-batches"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[providers.batch]
models = ["upstream-small"]
min_deadline_s = 3600
realtime_margin_s = 600

[[providers]]
name = "realtime-only"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "small"
upstream_model = "upstream-small"
providers = ["sells-batches", "realtime-only"]

[[models]]
name = "large"
providers = ["sells-batches"]

[[models]]
name = "fallback-first"
upstream_model = "upstream-small"
providers = ["realtime-only", "sells-batches"]
"#;

    fn targets() -> Targets {
        let config = Config::parse(CONFIG, "test.toml").unwrap();
        Targets::from_config(&config, &Arc::new(Metrics::new())).unwrap()
    }

    fn job(model: &str, deadline_in: Option<i64>) -> JobMessage {
        let now = Utc::now();
        let mut m = JobMessage::new(
            JobId::new(),
            "t",
            Endpoint::ChatCompletions,
            model,
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            now,
        );
        m.deadline_at = deadline_in.map(|s| now + chrono::Duration::seconds(s));
        m
    }

    #[test]
    fn only_jobs_with_time_enough_for_a_provider_that_sells_batches_go_into_one() {
        let t = targets();
        let now = Utc::now();
        let planned = t.plan(&job("small", Some(7200)), now).unwrap();
        assert_eq!(planned.target.provider, "sells-batches");
        assert_eq!(planned.target.upstream, "upstream-small");
        // Hedged the margin before the deadline.
        let deadline = now + chrono::Duration::seconds(7200);
        let early = deadline - planned.hedge_at;
        assert!((599..=601).contains(&early.num_seconds()), "{early}");
        assert!(planned.bytes > 0);

        assert!(t.plan(&job("small", None), now).is_none(), "no deadline");
        assert!(
            t.plan(&job("small", Some(1800)), now).is_none(),
            "too close"
        );
        assert!(
            t.plan(&job("large", Some(7200)), now).is_none(),
            "model not sold in batches"
        );
        assert!(
            t.plan(&job("fallback-first", Some(7200)), now).is_none(),
            "the route starts elsewhere"
        );
        let mut rerouted = job("small", Some(7200));
        rerouted.rerouted = true;
        assert!(t.plan(&rerouted, now).is_none(), "came back from a batch");
        let mut chosen = job("small", Some(7200));
        chosen.body["service_tier"] = json!("default");
        assert!(t.plan(&chosen, now).is_none(), "the caller chose a tier");
    }

    #[test]
    fn a_recorded_batch_finds_its_target_while_the_config_keeps_it() {
        let t = targets();
        let key = BatchTarget {
            provider: "sells-batches".into(),
            model: "small".into(),
            endpoint: Endpoint::ChatCompletions,
        };
        assert!(t.get(&key).is_some());
        let moved = BatchTarget {
            provider: "realtime-only".into(),
            ..key
        };
        assert!(t.get(&moved).is_none());
    }
}
