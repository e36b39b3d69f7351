//! Anthropic's Message Batches API (chat jobs only, as in real time).
//!
//! - submit: `POST /messages/batches` with `{"requests": [{"custom_id",
//!   "params"}]}`, where `params` is the Messages request the real-time
//!   adapter builds ([`to_messages`]).
//! - status: `GET /messages/batches/{id}`; cancel:
//!   `POST /messages/batches/{id}/cancel`.
//! - results: `GET {results_url}` (resolved against the `base_url` when it
//!   is relative), JSONL of `{"custom_id", "result": {"type": "succeeded",
//!   "message"} | {"type": "errored", "error": {"type": "error", "error":
//!   {"type", "message"}}} | {"type": "canceled"} | {"type": "expired"}}`.
//!   A succeeded message becomes an OpenAI chat completion
//!   ([`from_messages`]); an error's type stands for the HTTP status it is
//!   answered with in real time, and is retried (or not) as that status.
//!
//! `processing_status` maps to [`RemoteState`]: `in_progress`,
//! `canceling` → `cancelling`, and `ended` → `cancelled` if a cancel was
//! asked, `expired` if lines expired, else `completed`. Counts: `total` is
//! every line, `completed` the succeeded, `failed` the errored.
//!
//! Headers as in real time: `x-api-key` and `anthropic-version`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use sluice_core::config::ProviderConfig;
use sluice_core::metrics::Metrics;
use sluice_core::{Endpoint, Tier, Usage};

use super::client::{status_error, BatchClient};
use super::lines::Collector;
use super::{
    check_lines, BatchApi, BatchLimits, BatchLine, BatchResults, Counts, LineResult, NotRunReason,
    RemoteBatch, RemoteState,
};
use crate::adapter::AdapterBase;
use crate::anthropic::{from_messages, to_messages, ANTHROPIC_VERSION};
use crate::{ProviderError, SetupError};

/// Anthropic's limits: 100,000 requests, and a request of 256 MB.
pub const LIMITS: BatchLimits = BatchLimits {
    lines: 100_000,
    bytes: 256_000_000,
};
/// The longest `custom_id` Anthropic takes (of letters, digits, `-`, `_`).
pub const MAX_CUSTOM_ID: usize = 64;

pub struct AnthropicBatches {
    client: BatchClient,
}

impl AnthropicBatches {
    pub(super) fn new(
        base: AdapterBase,
        provider: &ProviderConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let mut auth = vec![("anthropic-version", ANTHROPIC_VERSION.to_owned())];
        if let Some(key) = base.http.api_key() {
            auth.push(("x-api-key", key.to_owned()));
        }
        Ok(Self {
            client: BatchClient::new(base, provider, metrics, auth)?,
        })
    }

    fn remote(&self, answer: &Value) -> Result<RemoteBatch, ProviderError> {
        remote_batch(answer).map_err(|why| self.client.terminal(why))
    }

    fn chat_only(&self, endpoint: Endpoint) -> Result<(), ProviderError> {
        if endpoint == Endpoint::ChatCompletions {
            return Ok(());
        }
        Err(self.client.terminal(format!(
            "{endpoint} is not served by an Anthropic provider (chat completions only)"
        )))
    }
}

#[derive(Serialize)]
struct Create<'a> {
    requests: Vec<Request<'a>>,
}

#[derive(Serialize)]
struct Request<'a> {
    custom_id: &'a str,
    params: &'a Value,
}

/// The body of `POST /messages/batches` for `lines`.
pub fn create_body(lines: &[BatchLine]) -> Result<Vec<u8>, serde_json::Error> {
    let requests = lines
        .iter()
        .map(|line| Request {
            custom_id: &line.custom_id,
            params: &line.body,
        })
        .collect();
    serde_json::to_vec(&Create { requests })
}

/// An Anthropic Message Batch object as a [`RemoteBatch`].
pub fn remote_batch(batch: &Value) -> Result<RemoteBatch, String> {
    let text = |field: &str| batch.get(field).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").ok_or("a message batch without an id")?;
    let count = |field: &str| {
        batch
            .pointer(&format!("/request_counts/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let [processing, succeeded, errored, canceled, expired] =
        ["processing", "succeeded", "errored", "canceled", "expired"].map(count);
    let status = text("processing_status").ok_or("a message batch without a status")?;
    let state = match status.as_str() {
        "in_progress" => RemoteState::InProgress,
        "canceling" => RemoteState::Cancelling,
        "ended" if text("cancel_initiated_at").is_some() => RemoteState::Cancelled,
        "ended" if expired > 0 => RemoteState::Expired,
        "ended" => RemoteState::Completed,
        other => return Err(format!("unknown processing_status {other:?}")),
    };
    Ok(RemoteBatch {
        id,
        state,
        counts: Counts {
            total: processing + succeeded + errored + canceled + expired,
            completed: succeeded,
            failed: errored,
        },
        input_file_id: None,
        output_file_id: text("results_url"),
        error_file_id: None,
        errors: Vec::new(),
    })
}

/// The HTTP status Anthropic answers a real-time call with for an error
/// of this `type`.
pub fn error_status(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// One line of a results file, already matched to `custom_id`, as its
/// result; `price` is what an answer with a usage costs.
pub fn line_result(
    provider: &str,
    custom_id: String,
    line: Value,
    price: impl Fn(&Usage) -> Option<u64>,
) -> LineResult {
    let failed = |status, error| LineResult::Failed {
        custom_id: custom_id.clone(),
        status,
        error,
    };
    let transient = |message: String| ProviderError::Transient {
        provider: provider.to_owned(),
        message,
    };
    let result = line.get("result").unwrap_or(&Value::Null);
    match result
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "succeeded" => {
            let message = result.get("message").unwrap_or(&Value::Null);
            match from_messages(message) {
                Ok(mut answer) => {
                    answer.tier = Tier::ProviderBatch;
                    answer.cost_micros = price(&answer.usage);
                    LineResult::Answered { custom_id, answer }
                }
                Err(why) => failed(
                    Some(200),
                    ProviderError::Terminal {
                        provider: provider.to_owned(),
                        message: format!("batch answer: {why}"),
                        rejection: None,
                    },
                ),
            }
        }
        "errored" => {
            // `error` is an error response: `{"type": "error", "error": {...}}`.
            let error = result.get("error").unwrap_or(&Value::Null);
            let kind = error
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match error_status(kind) {
                Some(status) => failed(
                    Some(status),
                    status_error(provider, status, None, &error.to_string()),
                ),
                None => failed(None, transient(format!("batch line failed: {error}"))),
            }
        }
        "canceled" => LineResult::NotRun {
            custom_id,
            reason: NotRunReason::Cancelled,
        },
        "expired" => LineResult::NotRun {
            custom_id,
            reason: NotRunReason::Expired,
        },
        other => failed(
            None,
            transient(format!("batch line with an unknown result type {other:?}")),
        ),
    }
}

#[async_trait]
impl BatchApi for AnthropicBatches {
    fn provider(&self) -> &str {
        self.client.name()
    }

    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn line(
        &self,
        endpoint: Endpoint,
        model: &str,
        custom_id: &str,
        body: &Value,
    ) -> Result<BatchLine, ProviderError> {
        self.chat_only(endpoint)?;
        let valid = (1..=MAX_CUSTOM_ID).contains(&custom_id.len())
            && custom_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !valid {
            return Err(self.client.terminal(format!(
                "custom_id {custom_id:?} is not 1 to {MAX_CUSTOM_ID} letters, digits, '-' or '_'"
            )));
        }
        let params =
            to_messages(body, model).map_err(|why| self.client.terminal(why.to_string()))?;
        Ok(BatchLine {
            custom_id: custom_id.to_owned(),
            body: params,
        })
    }

    async fn submit(
        &self,
        endpoint: Endpoint,
        lines: &[BatchLine],
        _metadata: &BTreeMap<String, String>,
    ) -> Result<RemoteBatch, ProviderError> {
        self.chat_only(endpoint)?;
        let refuse = |why: String| self.client.terminal(why);
        check_lines(lines, LIMITS, refuse)?;
        let body = create_body(lines).map_err(|e| refuse(e.to_string()))?;
        if body.len() > LIMITS.bytes {
            return Err(refuse(format!(
                "a batch of {} bytes is over the provider's {}",
                body.len(),
                LIMITS.bytes
            )));
        }
        let url = self.client.url("/messages/batches");
        let batch = self
            .client
            .json(Method::POST, &url, "/v1/messages/batches", Some(body))
            .await?;
        self.remote(&batch)
    }

    async fn status(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let batch = self
            .client
            .json_at(Method::GET, "/v1/messages/batches/{id}", remote_id)
            .await?;
        self.remote(&batch)
    }

    /// Message batches carry no metadata: a batch cannot be found by it.
    async fn find(&self, _key: &str, _value: &str) -> Result<Option<RemoteBatch>, ProviderError> {
        Ok(None)
    }

    async fn forget(&self, batch: &RemoteBatch) {
        if let Err(e) = self
            .client
            .json_at(Method::DELETE, "/v1/messages/batches/{id}", &batch.id)
            .await
        {
            tracing::warn!(provider = self.client.name(), batch = %batch.id, error = %e, "could not delete an ended message batch");
        }
    }

    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let batch = self
            .client
            .json_at(Method::POST, "/v1/messages/batches/{id}/cancel", remote_id)
            .await?;
        self.remote(&batch)
    }

    async fn results(
        &self,
        batch: &RemoteBatch,
        model: &str,
        custom_ids: &[String],
    ) -> Result<BatchResults, ProviderError> {
        let mut collector = Collector::new(custom_ids);
        let Some(results_url) = &batch.output_file_id else {
            return Ok(collector.finish());
        };
        let base = url::Url::parse(&self.client.url("/"))
            .map_err(|e| self.client.terminal(format!("base_url: {e}")))?;
        let url = base.join(results_url).map_err(|e| {
            self.client
                .terminal(format!("results_url {results_url:?}: {e}"))
        })?;
        let provider = self.client.name();
        let price = |usage: &Usage| self.client.cost(model, usage);
        collector.begin(format!("results of {}", batch.id));
        self.client
            .lines(url.as_str(), "/v1/messages/batches/{id}/results", |raw| {
                collector.line(raw, |custom_id, line| {
                    line_result(provider, custom_id, line, price)
                })
            })
            .await?;
        Ok(collector.finish())
    }
}
