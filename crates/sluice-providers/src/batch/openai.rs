//! OpenAI's Batch API (and OpenAI-compatible providers that serve it).
//!
//! - submit: `POST /files` (multipart: `purpose=batch`, `file` = JSONL, one
//!   `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`
//!   per line), then `POST /batches` with `{"input_file_id", "endpoint",
//!   "completion_window": "24h", "metadata"}` (no `metadata` when empty).
//!   An upload whose batch the provider refused (a 4xx) is deleted again
//!   (`DELETE /files/{id}`).
//! - status: `GET /batches/{id}`; cancel: `POST /batches/{id}/cancel`.
//! - results: `GET /files/{id}/content` of the output file, then of the
//!   error file. Each line is `{"id", "custom_id", "response":
//!   {"status_code", "request_id", "body"}, "error"}`: a 2xx `response` is
//!   an answer; another status fails the line as that status would fail a
//!   call; a null `response` with `error.code` `batch_expired` or
//!   `batch_cancelled` was never run; any other `error` is worth another try.
//!
//! Paths are joined to the provider's `base_url`, which ends in `/v1`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use sluice_core::config::ProviderConfig;
use sluice_core::metrics::Metrics;
use sluice_core::{Endpoint, Tier, Usage};

use super::client::{path_id, status_error, BatchClient};
use super::lines::Collector;
use super::{
    check_lines, BatchApi, BatchLimits, BatchLine, BatchResults, Counts, LineResult, NotRunReason,
    RemoteBatch, RemoteState,
};
use crate::adapter::AdapterBase;
use crate::openai::usage_of;
use crate::{Answer, ProviderError, SetupError};

/// OpenAI's limits: 50,000 requests, and an input file of 200 MB.
pub const LIMITS: BatchLimits = BatchLimits {
    lines: 50_000,
    bytes: 200_000_000,
};
/// The only completion window OpenAI offers.
pub const COMPLETION_WINDOW: &str = "24h";

pub struct OpenAiBatches {
    client: BatchClient,
}

impl OpenAiBatches {
    pub(super) fn new(
        base: AdapterBase,
        provider: &ProviderConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let auth = match base.http.api_key() {
            Some(key) => vec![("authorization", format!("Bearer {key}"))],
            None => Vec::new(),
        };
        Ok(Self {
            client: BatchClient::new(base, provider, metrics, auth)?,
        })
    }

    fn remote(&self, answer: &Value) -> Result<RemoteBatch, ProviderError> {
        remote_batch(answer).map_err(|why| self.client.terminal(why))
    }

    /// Deletes a file Sluice no longer needs; a failure is only logged.
    async fn delete_file(&self, id: &str) {
        let Ok(id) = path_id(&self.client, id) else {
            return;
        };
        let url = self.client.url(&format!("/files/{id}"));
        if let Err(e) = self
            .client
            .json(Method::DELETE, &url, "/v1/files/{id}", None)
            .await
        {
            tracing::warn!(provider = self.client.name(), file = id, error = %e, "could not delete a batch file");
        }
    }
}

#[derive(Serialize)]
struct InputLine<'a> {
    custom_id: &'a str,
    method: &'static str,
    url: &'static str,
    body: &'a Value,
}

/// The JSONL input file of `lines`, each a POST to `endpoint`.
pub fn input_file(endpoint: Endpoint, lines: &[BatchLine]) -> Result<Vec<u8>, serde_json::Error> {
    let mut file = Vec::new();
    for line in lines {
        let input = InputLine {
            custom_id: &line.custom_id,
            method: "POST",
            url: endpoint.path(),
            body: &line.body,
        };
        serde_json::to_writer(&mut file, &input)?;
        file.push(b'\n');
    }
    Ok(file)
}

/// An OpenAI batch object as a [`RemoteBatch`].
pub fn remote_batch(batch: &Value) -> Result<RemoteBatch, String> {
    let text = |field: &str| batch.get(field).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").ok_or("a batch without an id")?;
    let state = text("status")
        .ok_or("a batch without a status")?
        .parse::<RemoteState>()?;
    let count = |field: &str| {
        batch
            .pointer(&format!("/request_counts/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let errors = batch
        .pointer("/errors/data")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(batch_error).collect())
        .unwrap_or_default();
    Ok(RemoteBatch {
        id,
        state,
        counts: Counts {
            total: count("total"),
            completed: count("completed"),
            failed: count("failed"),
        },
        input_file_id: text("input_file_id"),
        output_file_id: text("output_file_id"),
        error_file_id: text("error_file_id"),
        errors,
    })
}

/// One of a batch's `errors.data`, as `line 3: code: message`.
fn batch_error(error: &Value) -> String {
    let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default();
    let what = format!("{}: {}", field("code"), field("message"));
    match error.get("line").and_then(Value::as_u64) {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}

/// One line of an output or error file, already matched to `custom_id`,
/// as its result; `price` is what an answer with a usage costs.
pub fn line_result(
    provider: &str,
    custom_id: String,
    mut line: Value,
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
    let response = line.get_mut("response").filter(|r| !r.is_null());
    if let Some(response) = response {
        let status = response
            .get("status_code")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        let body = response
            .get_mut("body")
            .map(Value::take)
            .unwrap_or_default();
        return match status {
            Some(200..=299) => match usage_of(&body) {
                Some(usage) => LineResult::Answered {
                    custom_id,
                    answer: Answer {
                        cost_micros: price(&usage),
                        body,
                        usage,
                        tier: Tier::ProviderBatch,
                    },
                },
                None => failed(
                    status,
                    ProviderError::Terminal {
                        provider: provider.to_owned(),
                        message: "batch answer without usage".into(),
                        rejection: None,
                    },
                ),
            },
            Some(code) => failed(
                status,
                status_error(provider, code, None, &body.to_string()),
            ),
            None => failed(None, transient("batch response without a status".into())),
        };
    }
    let error = line.get("error").filter(|e| !e.is_null());
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match field("code") {
        "batch_expired" => LineResult::NotRun {
            custom_id,
            reason: NotRunReason::Expired,
        },
        "batch_cancelled" => LineResult::NotRun {
            custom_id,
            reason: NotRunReason::Cancelled,
        },
        _ if error.is_none() => failed(
            None,
            transient("batch line with neither response nor error".into()),
        ),
        code => failed(
            None,
            transient(format!("batch line failed: {code}: {}", field("message"))),
        ),
    }
}

#[async_trait]
impl BatchApi for OpenAiBatches {
    fn provider(&self) -> &str {
        self.client.name()
    }

    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn line(
        &self,
        _endpoint: Endpoint,
        model: &str,
        custom_id: &str,
        body: &Value,
    ) -> Result<BatchLine, ProviderError> {
        if custom_id.is_empty() {
            return Err(self.client.terminal("a batch line needs a custom_id"));
        }
        let mut body = body.clone();
        let Some(fields) = body.as_object_mut() else {
            return Err(self.client.terminal("a job's body must be a JSON object"));
        };
        fields.insert("model".into(), json!(model));
        Ok(BatchLine {
            custom_id: custom_id.to_owned(),
            body,
        })
    }

    async fn submit(
        &self,
        endpoint: Endpoint,
        lines: &[BatchLine],
        metadata: &BTreeMap<String, String>,
    ) -> Result<RemoteBatch, ProviderError> {
        let refuse = |why: String| self.client.terminal(why);
        check_lines(lines, LIMITS, refuse)?;
        let file = input_file(endpoint, lines).map_err(|e| refuse(e.to_string()))?;
        if file.len() > LIMITS.bytes {
            return Err(refuse(format!(
                "a batch file of {} bytes is over the provider's {}",
                file.len(),
                LIMITS.bytes
            )));
        }
        let part = reqwest::multipart::Part::bytes(file).file_name("batch.jsonl");
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let uploaded = self
            .client
            .upload(&self.client.url("/files"), "/v1/files", form)
            .await?;
        let file_id = uploaded
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("the uploaded file has no id".into()))?;
        let mut create = json!({
            "input_file_id": file_id,
            "endpoint": endpoint.path(),
            "completion_window": COMPLETION_WINDOW,
        });
        if !metadata.is_empty() {
            create["metadata"] = json!(metadata);
        }
        let body = serde_json::to_vec(&create).map_err(|e| refuse(e.to_string()))?;
        let url = self.client.url("/batches");
        match self
            .client
            .json(Method::POST, &url, "/v1/batches", Some(body))
            .await
        {
            Ok(batch) => self.remote(&batch),
            Err(e) => {
                // Only a refusal says no batch holds the file.
                if !e.is_retryable() {
                    self.delete_file(file_id).await;
                }
                Err(e)
            }
        }
    }

    async fn status(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let batch = self
            .client
            .json_at(Method::GET, "/v1/batches/{id}", remote_id)
            .await?;
        self.remote(&batch)
    }

    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let batch = self
            .client
            .json_at(Method::POST, "/v1/batches/{id}/cancel", remote_id)
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
        let files = [
            ("output file", &batch.output_file_id),
            ("error file", &batch.error_file_id),
        ];
        let provider = self.client.name();
        let price = |usage: &Usage| self.client.cost(model, usage);
        for (what, file) in files {
            let Some(id) = file else { continue };
            let id = path_id(&self.client, id)?;
            collector.begin(format!("{what} {id}"));
            let url = self.client.url(&format!("/files/{id}/content"));
            self.client
                .lines(&url, "/v1/files/{id}/content", |raw| {
                    collector.line(raw, |custom_id, line| {
                        line_result(provider, custom_id, line, price)
                    })
                })
                .await?;
        }
        Ok(collector.finish())
    }

    async fn find(&self, key: &str, value: &str) -> Result<Option<RemoteBatch>, ProviderError> {
        let url = self.client.url("/batches?limit=100");
        let page = self
            .client
            .json(Method::GET, &url, "/v1/batches", None)
            .await?;
        let found = page
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|b| {
                b.pointer(&format!("/metadata/{key}"))
                    .and_then(Value::as_str)
                    == Some(value)
            });
        found.map(|b| self.remote(b)).transpose()
    }

    async fn forget(&self, batch: &RemoteBatch) {
        let files = [
            &batch.input_file_id,
            &batch.output_file_id,
            &batch.error_file_id,
        ];
        for id in files.into_iter().flatten() {
            self.delete_file(id).await;
        }
    }
}
