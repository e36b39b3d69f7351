//! The OpenAI-compatible adapter: chat completions (fan-out), completions
//! with a prompt array and embeddings with an input array (one call each).
//! A job that streams gets a call of its own with `stream: true`, its
//! chunks relayed as they come (`ProviderHttp::post_stream`).

use crate::adapter::AdapterBase;
use crate::tokens;
use crate::{Answer, Batch, Provider, ProviderError};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_core::batching::{array_items, request_tokens};
use sluice_core::config::ProviderConfig;
use sluice_core::split::split_proportional;
use sluice_core::tier::FlexConfig;
use sluice_core::{Endpoint, JobId, Tier, Usage};

pub struct OpenAiProvider {
    base: AdapterBase,
    /// Whether to send the batch's prefix hash as `prompt_cache_key`.
    prompt_cache_key: bool,
    /// Its flex tier, if the config uses it.
    flex: Option<FlexConfig>,
}

impl OpenAiProvider {
    pub fn new(base: AdapterBase, config: &ProviderConfig) -> Self {
        Self {
            base,
            prompt_cache_key: config.prompt_cache_key,
            flex: config.flex.clone(),
        }
    }

    /// The body as this batch sends it: with the batch's prefix hash as
    /// `prompt_cache_key` (unless turned off or the caller set one), and
    /// `service_tier: "flex"` on a flex call.
    fn outgoing(&self, body: Value, batch: &Batch) -> Value {
        let mut body = if self.prompt_cache_key {
            with_cache_key(body, &batch.prefix_hash)
        } else {
            body
        };
        if batch.flex.is_some() {
            body["service_tier"] = json!("flex");
        }
        body
    }

    fn terminal(&self, message: impl Into<String>) -> ProviderError {
        self.base.http.terminal(message)
    }

    /// The URL of `endpoint` and the headers of a call to it: the key as a
    /// bearer token, and the job's `traceparent`.
    fn request(
        &self,
        endpoint: Endpoint,
        traceparent: Option<&str>,
    ) -> (String, Vec<(&'static str, String)>) {
        let url = self
            .base
            .http
            .url(endpoint.path().trim_start_matches("/v1"));
        let mut headers: Vec<(&str, String)> = match self.base.http.api_key() {
            Some(key) => vec![("authorization", format!("Bearer {key}"))],
            None => Vec::new(),
        };
        if let Some(tp) = traceparent {
            headers.push((sluice_core::trace::HEADER, tp.to_owned()));
        }
        (url, headers)
    }

    /// One call to `endpoint` for `jobs`, within `timeout` if given.
    async fn post(
        &self,
        endpoint: Endpoint,
        body: &Value,
        traceparent: Option<&str>,
        jobs: &[JobId],
        timeout: Option<std::time::Duration>,
    ) -> Result<Value, ProviderError> {
        let (url, headers) = self.request(endpoint, traceparent);
        let tokens = request_tokens(endpoint, body);
        self.base
            .http
            .post(&url, &headers, body, endpoint.path(), tokens, jobs, timeout)
            .await
    }

    /// One call per job, at most `fanout` at once: chat (whose endpoint
    /// takes one conversation a call), and streaming completions.
    async fn one_by_one(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        // By index: a stream over references trips async-trait's bounds.
        futures::stream::iter(0..batch.jobs.len())
            .map(|i| self.one(batch, &batch.jobs[i]))
            .buffered(self.base.fanout)
            .collect()
            .await
    }

    /// `job`'s own call: streamed, its chunks relayed, when it asks and
    /// the worker takes chunks (a flex call never streams: its caller can
    /// wait).
    async fn one(&self, batch: &Batch, job: &crate::BatchJob) -> Result<Answer, ProviderError> {
        let model = batch.upstream_model.as_str();
        let mut body = self.outgoing(job.body.clone(), batch);
        body["model"] = json!(model);
        let relay = self
            .base
            .relay
            .as_deref()
            .filter(|_| job.stream && batch.flex.is_none());
        let response = match relay {
            Some(relay) => {
                let body = sluice_core::stream::streaming_body(body);
                let (url, headers) = self.request(batch.endpoint, job.traceparent.as_deref());
                let tokens = request_tokens(batch.endpoint, &body);
                self.base
                    .http
                    .post_stream(
                        &url,
                        &headers,
                        &body,
                        batch.endpoint.path(),
                        tokens,
                        job.id,
                        relay,
                        crate::decode::OpenAiChunks::new(batch.endpoint),
                    )
                    .await?
            }
            None => {
                self.post(
                    batch.endpoint,
                    &body,
                    job.traceparent.as_deref(),
                    &[job.id],
                    batch.flex,
                )
                .await?
            }
        };
        let usage = usage_of(&response).ok_or_else(|| self.terminal("response without usage"))?;
        if response.get("choices").and_then(Value::as_array).is_none() {
            return Err(self.terminal("response without choices"));
        }
        let tier = served_tier(&response, batch.tier());
        Ok(Answer {
            cost_micros: self.base.cost(model, tier, &usage),
            body: response,
            usage,
            tier,
        })
    }

    /// Completions or embeddings: one call with an array of prompts
    /// (inputs). Each job adds its items ([`array_items`]: one for a
    /// string, one each for a list), and gets back exactly its own answer
    /// items, in order, renumbered from 0, with its share of the usage.
    async fn array_call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        let n = batch.jobs.len();
        let everyone = |e: ProviderError| (0..n).map(|_| Err(e.clone())).collect();
        let (field, items_field) = match batch.endpoint {
            Endpoint::Completions => ("prompt", "choices"),
            _ => ("input", "data"),
        };
        let Some(first) = batch.jobs.first() else {
            return Vec::new();
        };
        // Each prompt has `n` choices (the jobs of a batch share `n`).
        let per_input = match batch.endpoint {
            Endpoint::Completions => first.body.get("n").and_then(Value::as_u64).unwrap_or(1),
            _ => 1,
        };
        let per_input = usize::try_from(per_input.max(1)).unwrap_or(1);
        let parts: Vec<Vec<Value>> = batch
            .jobs
            .iter()
            .map(|j| {
                let value = j.body.get(field).unwrap_or(&Value::Null);
                array_items(value).into_iter().cloned().collect()
            })
            .collect();
        let inputs: Vec<Value> = parts.iter().flatten().cloned().collect();
        let mut body = self.outgoing(first.body.clone(), batch);
        body["model"] = json!(batch.upstream_model);
        body[field] = Value::Array(inputs.clone());
        let traceparent = first.traceparent.as_deref();
        let ids: Vec<JobId> = batch.jobs.iter().map(|j| j.id).collect();
        let response = match self
            .post(batch.endpoint, &body, traceparent, &ids, batch.flex)
            .await
        {
            Ok(r) => r,
            Err(e) => return everyone(e),
        };
        let items = match match_by_index(&response, items_field, inputs.len() * per_input) {
            Ok(items) => items,
            Err(why) => return everyone(self.terminal(why)),
        };
        let Some(total) = usage_of(&response) else {
            return everyone(self.terminal("response without usage"));
        };
        let model = batch.upstream_model.as_str();
        let input_weights: Vec<u64> = inputs.iter().map(|i| input_tokens(model, i)).collect();
        let max_tokens = first.body.get("max_tokens").and_then(Value::as_u64);
        let prompt = split_proportional(total.prompt_tokens, &input_weights);
        let cached = split_proportional(total.cached_tokens, &input_weights);
        let completion = split_completion(model, total.completion_tokens, &items, max_tokens);
        // Each job's inputs, and its items, are a run of the call's.
        let mut usages = Vec::with_capacity(n);
        let mut start = 0;
        for part in &parts {
            let inputs = start..start + part.len();
            let choices = inputs.start * per_input..inputs.end * per_input;
            usages.push(Usage::new(
                prompt[inputs.clone()].iter().sum(),
                completion[choices].iter().sum(),
                cached[inputs].iter().sum(),
            ));
            start += part.len();
        }
        let tier = served_tier(&response, batch.tier());
        let costs: Vec<Option<u64>> = match self.base.price(model, tier) {
            Some(price) => price
                .split_cost(&total, &usages)
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; n],
        };
        // Each answer is the response around its own items: the envelope is
        // copied without the batch's items (copying them for every job made
        // a batch's answers cost the square of its size).
        let mut envelope = response;
        envelope[items_field] = Value::Array(Vec::new());
        let mut items = items.into_iter();
        parts
            .iter()
            .zip(usages)
            .zip(costs)
            .map(|((part, usage), cost_micros)| {
                let own: Vec<Value> = (0..part.len() * per_input)
                    .zip(items.by_ref())
                    .map(|(index, mut item)| {
                        item["index"] = json!(index);
                        item
                    })
                    .collect();
                let mut answer = envelope.clone();
                answer[items_field] = Value::Array(own);
                answer["usage"] = usage_json(batch.endpoint, &usage);
                Ok(Answer {
                    body: answer,
                    usage,
                    cost_micros,
                    tier,
                })
            })
            .collect()
    }
}

/// An input's weight in the call's prompt tokens: its tokens, counted with
/// the model's tokenizer, or its length when it is a list of token ids.
fn input_tokens(model: &str, input: &Value) -> u64 {
    match input {
        Value::Array(ids) => (ids.len() as u64).max(1),
        other => tokens::count(model, other.as_str().unwrap_or_default()),
    }
}

/// The tier the provider says it served a call on (OpenAI answers with
/// the `service_tier` it used: `flex`, or `default` when it ran the call
/// as a standard one), else the tier it was asked for.
fn served_tier(response: &Value, asked: Tier) -> Tier {
    match response.get("service_tier").and_then(Value::as_str) {
        Some("flex") => Tier::Flex,
        Some(_) => Tier::Realtime,
        None => asked,
    }
}

/// `body` with `prompt_cache_key` set to `key`, unless it has one (or the
/// key is empty, or the body is not an object).
fn with_cache_key(mut body: Value, key: &str) -> Value {
    if let Some(map) = body.as_object_mut() {
        if !key.is_empty() && !map.contains_key("prompt_cache_key") {
            map.insert("prompt_cache_key".into(), json!(key));
        }
    }
    body
}

/// Each choice's share of a batch call's completion tokens. A choice that
/// stopped for `length` generated exactly `max_tokens` (the batch shares
/// its parameters); the rest of the total is split across the others by
/// their tiktoken counts. If the fixed parts do not fit the total, the
/// whole total is split by counts. The parts always sum to the total.
fn split_completion(model: &str, total: u64, items: &[Value], max_tokens: Option<u64>) -> Vec<u64> {
    let hit_length =
        |item: &Value| item.get("finish_reason").and_then(Value::as_str) == Some("length");
    let count = |item: &Value| {
        tokens::count(
            model,
            item.get("text").and_then(Value::as_str).unwrap_or_default(),
        )
    };
    let fixed: u64 = match max_tokens {
        Some(max) => items.iter().filter(|i| hit_length(i)).count() as u64 * max,
        None => 0,
    };
    let (Some(max), true) = (max_tokens, fixed <= total && fixed > 0) else {
        return split_proportional(total, &items.iter().map(count).collect::<Vec<_>>());
    };
    // Only the choices that stopped early need counting.
    let free: Vec<u64> = items
        .iter()
        .map(|item| if hit_length(item) { 0 } else { count(item) })
        .collect();
    let rest = total - fixed;
    if free.iter().all(|&c| c == 0) && rest > 0 {
        return split_proportional(total, &items.iter().map(count).collect::<Vec<_>>());
    }
    let shares = split_proportional(rest, &free);
    items
        .iter()
        .zip(shares)
        .map(|(item, share)| if hit_length(item) { max } else { share })
        .collect()
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
pub(crate) fn usage_of(response: &Value) -> Option<Usage> {
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
        self.base.http.name()
    }

    fn flex(&self) -> Option<&FlexConfig> {
        self.flex.as_ref()
    }

    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        // A batch's jobs all stream or none does (their batch key says).
        let streams = batch.jobs.iter().any(|job| job.stream) && self.base.relay.is_some();
        match batch.endpoint {
            Endpoint::ChatCompletions => self.one_by_one(batch).await,
            Endpoint::Completions if streams => self.one_by_one(batch).await,
            Endpoint::Completions | Endpoint::Embeddings => self.array_call(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_hash_becomes_the_prompt_cache_key_unless_the_caller_set_one() {
        let set = with_cache_key(json!({"model": "m"}), "abc");
        assert_eq!(set["prompt_cache_key"], "abc");
        let kept = with_cache_key(json!({"prompt_cache_key": "mine"}), "abc");
        assert_eq!(kept["prompt_cache_key"], "mine");
        assert!(with_cache_key(json!({}), "")
            .get("prompt_cache_key")
            .is_none());
    }

    #[test]
    fn length_limited_choices_get_exactly_max_tokens() {
        let items = vec![
            json!({"text": "mock:7e5b8ad56422e58b", "finish_reason": "length"}),
            json!({"text": "mock:0123", "finish_reason": "length"}),
            json!({"text": "a short answer", "finish_reason": "stop"}),
            json!({"text": "a somewhat longer answer than that", "finish_reason": "stop"}),
        ];
        let parts = split_completion("gpt-4o", 20 + 9, &items, Some(10));
        assert_eq!(&parts[..2], &[10, 10]);
        assert_eq!(parts.iter().sum::<u64>(), 29);
        assert!(parts[3] > parts[2]);
        // Inconsistent totals fall back to a proportional split, still exact.
        let parts = split_completion("gpt-4o", 5, &items, Some(10));
        assert_eq!(parts.iter().sum::<u64>(), 5);
    }

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
