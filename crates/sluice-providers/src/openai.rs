//! The OpenAI-compatible adapter: chat completions (fan-out), completions
//! with a prompt array and embeddings with an input array (one call each).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_core::batching::estimate_tokens;
use sluice_core::config::ProviderConfig;
use sluice_core::metrics::Metrics;
use sluice_core::split::split_proportional;
use sluice_core::{Endpoint, Usage};
use tokio::sync::Semaphore;

use crate::{Answer, Batch, Provider, ProviderError};

/// The longest `Retry-After` honoured as given; longer asks are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The wait assumed for a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How much of an error body is kept for the job's error message.
const ERROR_BODY_LIMIT: usize = 2_000;

pub struct OpenAiProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    http: reqwest::Client,
    /// Calls in flight to this provider from this process.
    permits: Arc<Semaphore>,
    /// Concurrent calls within one chat batch.
    fanout: usize,
    metrics: Arc<Metrics>,
}

impl OpenAiProvider {
    /// Builds the adapter; reads the API key from the environment variable
    /// the config names. Fails if that variable is unset.
    pub fn new(
        config: &ProviderConfig,
        fanout: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                format!(
                    "provider {:?}: environment variable {var} (api_key_env) is not set",
                    config.name
                )
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_s))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(config.max_concurrency)
            .build()
            .map_err(|e| format!("provider {:?}: {e}", config.name))?;
        Ok(Self {
            name: config.name.clone(),
            base_url: config.base_url.as_str().trim_end_matches('/').to_owned(),
            api_key,
            http,
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            fanout: fanout.max(1),
            metrics,
        })
    }

    fn url(&self, endpoint: Endpoint) -> String {
        let path = endpoint.path().trim_start_matches("/v1");
        format!("{}{path}", self.base_url)
    }

    fn transient(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Transient {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    fn terminal(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Terminal {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    /// One HTTP call; the decoded JSON body of a 2xx answer.
    async fn post(&self, endpoint: Endpoint, body: &Value) -> Result<Value, ProviderError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.transient("provider is shutting down"))?;
        let started = Instant::now();
        let result = self.post_unmetered(endpoint, body).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ProviderError::Terminal { .. }) => "rejected",
            Err(_) => "unavailable",
        };
        self.metrics
            .provider_duration
            .with_label_values(&[&self.name, endpoint.path(), outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn post_unmetered(
        &self,
        endpoint: Endpoint,
        body: &Value,
    ) -> Result<Value, ProviderError> {
        let mut request = self.http.post(self.url(endpoint)).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                self.transient("request timed out")
            } else {
                self.transient(format!("request failed: {e}"))
            }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
        if status.is_success() {
            return response
                .json::<Value>()
                .await
                .map_err(|e| self.transient(format!("unreadable response body: {e}")));
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| text.chars().take(ERROR_BODY_LIMIT).collect());
        let message = format!("HTTP {}: {message}", status.as_u16());
        match status.as_u16() {
            429 => Err(ProviderError::RetryAfter {
                provider: self.name.clone(),
                after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                message,
            }),
            503 if retry_after.is_some() => Err(ProviderError::RetryAfter {
                provider: self.name.clone(),
                after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                message,
            }),
            408 | 409 | 500..=599 => Err(self.transient(message)),
            _ => Err(self.terminal(message)),
        }
    }

    async fn chat(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        let model = batch.upstream_model.as_str();
        let bodies: Vec<Value> = batch.jobs.iter().map(|job| job.body.clone()).collect();
        futures::stream::iter(bodies)
            .map(|body| self.chat_one(body, model))
            .buffered(self.fanout)
            .collect()
            .await
    }

    async fn chat_one(&self, mut body: Value, model: &str) -> Result<Answer, ProviderError> {
        body["model"] = json!(model);
        let response = self.post(Endpoint::ChatCompletions, &body).await?;
        let usage = usage_of(&response)
            .ok_or_else(|| self.terminal("chat completion response without usage"))?;
        if response.get("choices").and_then(Value::as_array).is_none() {
            return Err(self.terminal("chat completion response without choices"));
        }
        Ok(Answer {
            body: response,
            usage,
        })
    }

    /// Completions or embeddings: one call with an array of prompts/inputs.
    async fn array_call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        let n = batch.jobs.len();
        let everyone = |e: ProviderError| (0..n).map(|_| Err(e.clone())).collect();
        let (field, items_field) = match batch.endpoint {
            Endpoint::Completions => ("prompt", "choices"),
            _ => ("input", "data"),
        };
        let inputs: Vec<Value> = batch
            .jobs
            .iter()
            .map(|j| j.body.get(field).cloned().unwrap_or(Value::Null))
            .collect();
        let Some(first) = batch.jobs.first() else {
            return Vec::new();
        };
        let mut body = first.body.clone();
        body["model"] = json!(batch.upstream_model);
        body[field] = Value::Array(inputs.clone());
        let response = match self.post(batch.endpoint, &body).await {
            Ok(r) => r,
            Err(e) => return everyone(e),
        };
        let items = match match_by_index(&response, items_field, n) {
            Ok(items) => items,
            Err(why) => return everyone(self.terminal(why)),
        };
        let Some(total) = usage_of(&response) else {
            return everyone(self.terminal("response without usage"));
        };
        let prompt_weights: Vec<u64> = inputs
            .iter()
            .map(|i| estimate_tokens(i.as_str().unwrap_or_default()))
            .collect();
        let completion_weights: Vec<u64> = items
            .iter()
            .map(|item| {
                estimate_tokens(item.get("text").and_then(Value::as_str).unwrap_or_default())
            })
            .collect();
        let prompt = split_proportional(total.prompt_tokens, &prompt_weights);
        let completion = split_proportional(total.completion_tokens, &completion_weights);
        let cached = split_proportional(total.cached_tokens, &prompt_weights);
        items
            .into_iter()
            .enumerate()
            .map(|(i, mut item)| {
                item["index"] = json!(0);
                let usage = Usage::new(prompt[i], completion[i], cached[i]);
                let mut answer = response.clone();
                answer[items_field] = json!([item]);
                answer["usage"] = usage_json(batch.endpoint, &usage);
                Ok(Answer {
                    body: answer,
                    usage,
                })
            })
            .collect()
    }
}

/// The items of an array response, in job order, each matched by its
/// `index`. Every job must get exactly one.
fn match_by_index(response: &Value, field: &str, n: usize) -> Result<Vec<Value>, String> {
    let items = response
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("response without {field}"))?;
    let mut slots: Vec<Option<Value>> = vec![None; n];
    for item in items {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| format!("an item of {field} has no index"))?;
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| format!("{field} index {index} is outside the batch of {n}"))?;
        if slot.replace(item.clone()).is_some() {
            return Err(format!("{field} index {index} answered twice"));
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| format!("no {field} item for index {i}")))
        .collect()
}

/// The usage a response reports, with cached prompt tokens where given.
fn usage_of(response: &Value) -> Option<Usage> {
    let usage = response.get("usage")?;
    let prompt = usage.get("prompt_tokens")?.as_u64()?;
    let completion = usage
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage::new(prompt, completion, cached))
}

fn usage_json(endpoint: Endpoint, u: &Usage) -> Value {
    match endpoint {
        Endpoint::Embeddings => {
            json!({"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens})
        }
        _ => json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        }),
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        match batch.endpoint {
            Endpoint::ChatCompletions => self.chat(batch).await,
            Endpoint::Completions | Endpoint::Embeddings => self.array_call(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_matched_by_index_never_by_position() {
        let r = json!({"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a"}]});
        let items = match_by_index(&r, "choices", 2).unwrap();
        assert_eq!(items[0]["text"], "a");
        assert_eq!(items[1]["text"], "b");
        let twice = json!({"choices": [{"index": 0}, {"index": 0}]});
        assert!(match_by_index(&twice, "choices", 2)
            .unwrap_err()
            .contains("twice"));
        let missing = json!({"choices": [{"index": 0}]});
        assert!(match_by_index(&missing, "choices", 2)
            .unwrap_err()
            .contains("index 1"));
        let outside = json!({"choices": [{"index": 0}, {"index": 5}]});
        assert!(match_by_index(&outside, "choices", 2)
            .unwrap_err()
            .contains("outside"));
    }
}
