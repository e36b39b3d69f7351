//! Routes: a model's ordered providers. A batch goes to the first; jobs
//! that fail with a retryable error are retried there with exponential
//! backoff and full jitter (never sooner than a `Retry-After`), then fall
//! back to the next provider. Terminal errors end a job at once. Each call
//! given up on after its request reached the provider (a client-side
//! timeout, a connection or stream broken midway) is handed back with the
//! jobs' ends ([`Abandoned`]): the provider may have billed it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sluice_core::backoff::Backoff;
use sluice_core::budget::RateBudget;
use sluice_core::config::{Config, ProviderKind};
use sluice_core::metrics::Metrics;
use sluice_core::{Endpoint, Tier};

use crate::adapter::AdapterBase;
use crate::anthropic::AnthropicProvider;
use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::openai::OpenAiProvider;
use crate::{Answer, Batch, BatchJob, Provider, ProviderError, SetupError};

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Calls to one provider for one job before falling back.
    pub attempts: u32,
    /// First backoff ceiling; doubled per attempt.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub max: Duration,
}

impl RetryPolicy {
    /// A full-jitter backoff before attempt `attempt + 1`, at least `floor`
    /// (a provider's `Retry-After`).
    pub fn backoff(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        Backoff::exponential(self.base, self.max)
            .with_full_jitter()
            .delay(attempt)
            .max(floor.unwrap_or_default())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

pub struct Route {
    pub providers: Vec<Arc<dyn Provider>>,
    pub upstream_model: String,
    /// Parallel to `providers`: a weight among equals, or 0 for an
    /// ordinary place in the order.
    pub weights: Vec<u32>,
}

impl Route {
    /// A route tried strictly in order.
    pub fn ordered(providers: Vec<Arc<dyn Provider>>, upstream_model: impl Into<String>) -> Self {
        let weights = vec![0; providers.len()];
        Self {
            providers,
            upstream_model: upstream_model.into(),
            weights,
        }
    }

    /// This call's order: the weighted providers first, shuffled by weight
    /// (the first drawn with probability weight / total, and so on), then
    /// the others in their configured order.
    pub fn order(&self, rng: &mut impl Rng) -> Vec<&Arc<dyn Provider>> {
        let mut weighted: Vec<(usize, u32)> = self
            .weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .map(|(i, w)| (i, *w))
            .collect();
        let mut order = Vec::with_capacity(self.providers.len());
        while !weighted.is_empty() {
            let total: u32 = weighted.iter().map(|(_, w)| w).sum();
            let mut draw = rng.gen_range(0..total);
            let pick = weighted
                .iter()
                .position(|(_, w)| {
                    if draw < *w {
                        true
                    } else {
                        draw -= w;
                        false
                    }
                })
                .unwrap_or(0);
            order.push(&self.providers[weighted.remove(pick).0]);
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.weights.get(i).copied().unwrap_or(0) == 0 {
                order.push(p);
            }
        }
        order
    }
}

/// One job's end: the answer and the provider that gave it, or the last error.
pub type Routed = Result<(Answer, String), ProviderError>;

/// A call for a job given up on after its request reached the provider
/// ([`ProviderError::Abandoned`]): the provider may have billed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abandoned {
    pub provider: String,
    /// The tier it was asked for.
    pub tier: Tier,
}

/// Each job's end, and the calls for it given up on on the way, by the
/// job's index.
#[derive(Debug)]
pub struct RoutedCalls {
    pub ends: Vec<Routed>,
    pub abandoned: Vec<Vec<Abandoned>>,
}

/// Where the jobs of one routed call stand, by their index in it.
struct Calls {
    ends: Vec<Option<Routed>>,
    last_error: Vec<Option<ProviderError>>,
    abandoned: Vec<Vec<Abandoned>>,
    /// The jobs still without an end.
    pending: Vec<usize>,
}

/// What one provider call left for the next.
struct Left {
    /// The longest wait a failed job's error asked for.
    wait_floor: Option<Duration>,
    /// Why jobs are left: `unavailable` (the provider asked to wait, as a
    /// 429 does) or `failed`; `None` when none are.
    reason: Option<&'static str>,
}

impl Calls {
    /// Takes one provider call's results for the pending jobs: an answer
    /// or a terminal error ends a job; a retryable error leaves it pending,
    /// and an abandoned call is noted. `attempt` numbers a standard call
    /// (`None`: a flex call).
    fn absorb(
        &mut self,
        provider: &str,
        attempt: Option<u32>,
        results: Vec<Result<Answer, ProviderError>>,
    ) -> Left {
        let tier = if attempt.is_some() {
            Tier::Realtime
        } else {
            Tier::Flex
        };
        let mut still = Vec::new();
        let mut left = Left {
            wait_floor: None,
            reason: None,
        };
        for (&i, result) in self.pending.iter().zip(results) {
            match result {
                Ok(answer) => self.ends[i] = Some(Ok((answer, provider.to_owned()))),
                Err(e) if !e.is_retryable() => self.ends[i] = Some(Err(e)),
                Err(e) => {
                    if e.is_abandoned() {
                        self.abandoned[i].push(Abandoned {
                            provider: provider.to_owned(),
                            tier,
                        });
                    }
                    left.wait_floor = left.wait_floor.max(e.retry_after());
                    let reason = if e.retry_after().is_some() {
                        "unavailable"
                    } else {
                        "failed"
                    };
                    left.reason.get_or_insert(reason);
                    match attempt {
                        Some(attempt) => {
                            tracing::warn!(provider, attempt, error = %e, "provider call failed")
                        }
                        None => {
                            tracing::info!(provider, error = %e, "flex call failed; calling in real time")
                        }
                    }
                    self.last_error[i] = Some(e);
                    still.push(i);
                }
            }
        }
        self.pending = still;
        left
    }
}

/// Whether the provider answered a call: some job got an answer or an
/// error retrying cannot change.
fn answered(results: &[Result<Answer, ProviderError>]) -> bool {
    results
        .iter()
        .any(|r| r.as_ref().map_or_else(|e| !e.is_retryable(), |_| true))
}

/// The timeout of a flex call to `provider` for `jobs` ([`FlexConfig::plan`]
/// over the earliest deadline), or `None` for a standard call: the
/// provider sells no flex, a job cannot wait, or a caller chose its own
/// `service_tier`.
///
/// [`FlexConfig::plan`]: sluice_core::tier::FlexConfig::plan
fn flex_timeout(provider: &dyn Provider, model: &str, jobs: &[BatchJob]) -> Option<Duration> {
    let flex = provider.flex()?;
    if jobs.iter().any(|j| j.body.get("service_tier").is_some()) {
        return None;
    }
    let earliest = jobs
        .iter()
        .map(|j| j.deadline)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()?;
    let slack = (earliest - chrono::Utc::now()).to_std().ok();
    flex.plan(model, slack)
}

pub struct Router {
    routes: HashMap<String, Route>,
    policy: RetryPolicy,
    /// One breaker per provider, shared by every route through it.
    breakers: HashMap<String, Arc<Breaker>>,
    metrics: Option<Arc<Metrics>>,
}

impl Router {
    /// A router whose providers all get the default breaker.
    pub fn new(routes: HashMap<String, Route>, policy: RetryPolicy) -> Self {
        let breakers = routes
            .values()
            .flat_map(|r| r.providers.iter())
            .map(|p| {
                (
                    p.name().to_owned(),
                    Arc::new(Breaker::new(BreakerConfig::default())),
                )
            })
            .collect();
        Self {
            routes,
            policy,
            breakers,
            metrics: None,
        }
    }

    fn breaker(&self, provider: &str) -> Option<&Breaker> {
        self.breakers.get(provider).map(Arc::as_ref)
    }

    /// Whether `provider`'s breaker is open: then every pending job notes
    /// it, and the provider is skipped.
    fn skipped(&self, provider: &dyn Provider, calls: &mut Calls) -> bool {
        let open = self
            .breaker(provider.name())
            .is_some_and(|b| b.admit() == Admission::Skip);
        if open {
            let error = ProviderError::Transient {
                provider: provider.name().to_owned(),
                message: "circuit breaker open; provider skipped".into(),
            };
            for &i in &calls.pending {
                calls.last_error[i].get_or_insert_with(|| error.clone());
            }
        }
        open
    }

    /// Whether `provider`'s breaker is closed (or it has none).
    fn closed(&self, provider: &str) -> bool {
        self.breaker(provider)
            .is_none_or(|b| b.state() == crate::breaker::BreakerState::Closed)
    }

    /// Tells `provider`'s breaker whether it answered.
    fn record(&self, provider: &str, answered: bool) {
        if let Some(b) = self.breaker(provider) {
            b.record(answered);
            self.show_breaker(provider);
        }
    }

    fn show_breaker(&self, provider: &str) {
        if let (Some(metrics), Some(breaker)) = (&self.metrics, self.breaker(provider)) {
            metrics
                .provider_breaker_state
                .with_label_values(&[provider])
                .set(breaker.state().gauge());
        }
    }

    /// Builds every provider and route the config names; providers with
    /// limits take from the fleet-wide `budget`; the worker hears of the
    /// calls through `hooks`.
    pub fn from_config(
        config: &Config,
        metrics: Arc<Metrics>,
        budget: Option<Arc<dyn RateBudget>>,
        hooks: crate::CallHooks,
    ) -> Result<Self, SetupError> {
        let mut providers: HashMap<&str, Arc<dyn Provider>> = HashMap::new();
        for p in &config.providers {
            let base = AdapterBase::new(
                config,
                p,
                Arc::clone(&metrics),
                budget.clone(),
                hooks.clone(),
            )?;
            let provider: Arc<dyn Provider> = match p.kind {
                ProviderKind::Openai => Arc::new(OpenAiProvider::new(base, p)),
                ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(base)),
            };
            providers.insert(p.name.as_str(), provider);
        }
        let mut routes = HashMap::new();
        for m in &config.models {
            let chain = m
                .providers
                .iter()
                .map(|name| {
                    providers.get(name.as_str()).cloned().ok_or_else(|| {
                        SetupError::UnknownProvider {
                            model: m.name.clone(),
                            provider: name.clone(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let weights = m
                .providers
                .iter()
                .map(|name| m.weights.get(name).copied().unwrap_or(0))
                .collect();
            routes.insert(
                m.name.clone(),
                Route {
                    providers: chain,
                    upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
                    weights,
                },
            );
        }
        let policy = RetryPolicy {
            attempts: config.worker.provider_attempts,
            base: Duration::from_millis(config.worker.provider_backoff_ms),
            ..RetryPolicy::default()
        };
        let mut router = Self::new(routes, policy);
        for p in &config.providers {
            let breaker = BreakerConfig {
                failures_to_open: p.breaker_failures,
                cool_down: std::time::Duration::from_secs(p.breaker_cool_down_s),
            };
            router
                .breakers
                .insert(p.name.clone(), Arc::new(Breaker::new(breaker)));
        }
        router.metrics = Some(metrics);
        for name in router.breakers.keys() {
            router.show_breaker(name);
        }
        Ok(router)
    }

    pub fn knows(&self, model: &str) -> bool {
        self.routes.contains_key(model)
    }

    /// Runs `jobs` for `model` to an end each; the result at index i is job
    /// i's. `prefix_hash` names the prompt prefix the jobs share.
    pub async fn call(
        &self,
        model: &str,
        endpoint: Endpoint,
        prefix_hash: &str,
        jobs: Vec<BatchJob>,
    ) -> Vec<Routed> {
        self.route(model, endpoint, prefix_hash, jobs).await.ends
    }

    /// [`call`](Self::call), with the calls abandoned on the way.
    pub async fn route(
        &self,
        model: &str,
        endpoint: Endpoint,
        prefix_hash: &str,
        jobs: Vec<BatchJob>,
    ) -> RoutedCalls {
        let n = jobs.len();
        let Some(route) = self.routes.get(model) else {
            let e = ProviderError::Terminal {
                provider: "router".into(),
                message: format!("no route for model {model:?}"),
                rejection: None,
            };
            return RoutedCalls {
                ends: (0..n).map(|_| Err(e.clone())).collect(),
                abandoned: vec![Vec::new(); n],
            };
        };
        let mut calls = Calls {
            ends: (0..n).map(|_| None).collect(),
            last_error: vec![None; n],
            abandoned: vec![Vec::new(); n],
            pending: (0..n).collect(),
        };
        let order = route.order(&mut rand::thread_rng());
        'providers: for provider in order {
            let batch = |pending: &[usize], flex| Batch {
                endpoint,
                prefix_hash: prefix_hash.to_owned(),
                upstream_model: route.upstream_model.clone(),
                jobs: pending.iter().map(|&i| jobs[i].clone()).collect(),
                flex,
            };
            // Flex first, while the breaker is closed (a probe must be a
            // standard call: a flex refusal says nothing of the provider).
            let flex = flex_timeout(provider.as_ref(), &route.upstream_model, &jobs)
                .filter(|_| self.closed(provider.name()));
            if let Some(timeout) = flex {
                let results = provider.call(&batch(&calls.pending, Some(timeout))).await;
                // A refused or slow flex call is no sign of a failing
                // provider: only its answers reach the breaker.
                if answered(&results) {
                    self.record(provider.name(), true);
                }
                let left = calls.absorb(provider.name(), None, results);
                if let (Some(metrics), Some(reason)) = (&self.metrics, left.reason) {
                    metrics
                        .flex_fallbacks
                        .with_label_values(&[provider.name(), reason])
                        .inc();
                }
                if calls.pending.is_empty() {
                    break 'providers;
                }
            }
            for attempt in 1..=self.policy.attempts {
                if self.skipped(provider.as_ref(), &mut calls) {
                    continue 'providers;
                }
                let results = provider.call(&batch(&calls.pending, None)).await;
                self.record(provider.name(), answered(&results));
                let left = calls.absorb(provider.name(), Some(attempt), results);
                if calls.pending.is_empty() {
                    break 'providers;
                }
                if attempt < self.policy.attempts {
                    tokio::time::sleep(self.policy.backoff(attempt, left.wait_floor)).await;
                }
            }
        }
        let Calls {
            ends,
            last_error,
            abandoned,
            ..
        } = calls;
        let ends = ends
            .into_iter()
            .zip(last_error)
            .map(|(end, last)| {
                end.unwrap_or_else(|| {
                    Err(last.unwrap_or_else(|| ProviderError::Transient {
                        provider: "router".into(),
                        message: "no provider answered".into(),
                    }))
                })
            })
            .collect();
        RoutedCalls { ends, abandoned }
    }
}

#[cfg(test)]
mod tests;
