//! The HTTP side both Batch API clients share: a client with the provider's
//! auth and config headers, JSON calls, one multipart upload, result files
//! read as a stream of lines, the duration and error metrics, and one
//! mapping from a failed call to a [`ProviderError`] (through
//! [`crate::http::classify`], as the real-time calls map theirs).
//!
//! Batch calls take nothing from the fleet-wide rate budget and tell no send
//! log: the Batch APIs have limits of their own, and the worker's record of
//! a remote batch is what says its jobs were sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sluice_core::config::ProviderConfig;
use sluice_core::metrics::Metrics;
use sluice_core::{Tier, Usage};

use super::lines::{LineSplitter, MAX_LINE_BYTES};
use crate::adapter::AdapterBase;
use crate::http::asked_wait;
use crate::{ProviderError, SetupError};

/// The longest an upload or a result file download may take: a 200 MB file
/// at about half a megabyte a second. The provider's own `timeout_s` still
/// bounds each wait for bytes (a stalled transfer ends sooner).
const FILE_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

pub(super) struct BatchClient {
    base: AdapterBase,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// The provider's `timeout_s`: a whole control call (create, status,
    /// cancel), and each wait for bytes of a file transfer.
    timeout: Duration,
}

impl BatchClient {
    /// A client for `provider` whose every request carries `auth` (the
    /// provider's key headers) and the headers the config adds.
    pub fn new(
        base: AdapterBase,
        provider: &ProviderConfig,
        metrics: Arc<Metrics>,
        auth: Vec<(&'static str, String)>,
    ) -> Result<Self, SetupError> {
        let name = || provider.name.clone();
        let mut headers = HeaderMap::new();
        // `AdapterBase::new` has checked the config's headers already.
        for (header, value) in &provider.headers {
            if let (Ok(header), Ok(value)) = (
                HeaderName::from_bytes(header.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(header, value);
            }
        }
        for (header, value) in auth {
            let mut value = HeaderValue::from_str(&value).map_err(|e| SetupError::BadHeader {
                provider: name(),
                name: header.into(),
                reason: format!("not a header value: {e}"),
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let timeout = Duration::from_secs(provider.timeout_s);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(timeout)
            .build()
            .map_err(|source| SetupError::Client {
                provider: name(),
                source,
            })?;
        Ok(Self {
            base,
            client,
            metrics,
            timeout,
        })
    }

    pub fn name(&self) -> &str {
        self.base.http.name()
    }

    /// The base URL joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        self.base.http.url(path)
    }

    pub fn terminal(&self, message: impl Into<String>) -> ProviderError {
        self.base.http.terminal(message)
    }

    /// What one answered line for `model` cost at the batch price, in µ$.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.base.cost(model, Tier::ProviderBatch, usage)
    }

    /// `method` on the provider's path `template` (as its docs write it,
    /// `/v1/…/{id}`), with `{id}` the batch `remote_id` (refused unless it
    /// is safe in a path); its JSON answer. The template names the call
    /// in the metrics.
    pub async fn json_at(
        &self,
        method: Method,
        template: &str,
        remote_id: &str,
    ) -> Result<Value, ProviderError> {
        let id = path_id(self, remote_id)?;
        let path = template.trim_start_matches("/v1").replace("{id}", id);
        self.json(method, &self.url(&path), template, None).await
    }

    /// A JSON call; the decoded 2xx answer. `label` names the endpoint in
    /// the metrics (a path with `{id}`, never an id).
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        label: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ProviderError> {
        let mut request = self.client.request(method, url).timeout(self.timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = self.send(request, label).await?;
        response.json::<Value>().await.map_err(|e| {
            self.failed(
                label,
                "bad_response",
                self.transient(e, "unreadable answer"),
            )
        })
    }

    /// A multipart POST (a file upload); the decoded 2xx answer.
    pub async fn upload(
        &self,
        url: &str,
        label: &str,
        form: reqwest::multipart::Form,
    ) -> Result<Value, ProviderError> {
        let request = self
            .client
            .post(url)
            .timeout(FILE_TRANSFER_TIMEOUT)
            .multipart(form);
        let response = self.send(request, label).await?;
        response.json::<Value>().await.map_err(|e| {
            self.failed(
                label,
                "bad_response",
                self.transient(e, "unreadable answer"),
            )
        })
    }

    /// GETs the JSONL file at `url` and hands each of its lines (without
    /// the newline) to `each` as the bytes arrive; a line longer than
    /// [`MAX_LINE_BYTES`], or a transfer cut short, is an error (the whole
    /// read is worth another try).
    pub async fn lines(
        &self,
        url: &str,
        label: &str,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), ProviderError> {
        let request = self.client.get(url).timeout(FILE_TRANSFER_TIMEOUT);
        let mut response = self.send(request, label).await?;
        let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                self.failed(
                    label,
                    "bad_response",
                    self.transient(e, "result file cut short"),
                )
            })?;
            let Some(chunk) = chunk else { break };
            splitter.push(&chunk, &mut each).map_err(|too_long| {
                let error = self.terminal(format!("{label}: {too_long}"));
                self.failed(label, "bad_response", error)
            })?;
        }
        splitter.finish(&mut each);
        Ok(())
    }

    /// Sends `request`; a 2xx response, or the failure mapped to its retry
    /// decision. Observes the call's duration (to its response headers).
    async fn send(&self, request: RequestBuilder, label: &str) -> Result<Response, ProviderError> {
        let started = Instant::now();
        let result = match request.send().await {
            Err(e) if e.is_timeout() => Err(("timeout", self.transient(e, "request timed out"))),
            Err(e) => Err(("connect", self.transient(e, "request failed"))),
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(self.refusal(response).await),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err((_, ProviderError::Terminal { .. })) => "rejected",
            Err(_) => "unavailable",
        };
        self.metrics
            .provider_duration
            .with_label_values(&[self.name(), label, outcome])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|(kind, error)| self.failed(label, kind, error))
    }

    /// Counts a failed call in `sluice_provider_errors_total`.
    fn failed(&self, label: &str, kind: &str, error: ProviderError) -> ProviderError {
        self.metrics
            .provider_errors
            .with_label_values(&[self.name(), label, kind])
            .inc();
        error
    }

    fn transient(&self, error: reqwest::Error, what: &str) -> ProviderError {
        self.base.http.transient(format!("{what}: {error}"))
    }

    /// A non-2xx answer as an error with its kind for the metrics: 429 and
    /// 5xx are worth another try, other 4xx are not (and carry the
    /// provider's refusal).
    async fn refusal(&self, response: Response) -> (&'static str, ProviderError) {
        let code = response.status().as_u16();
        let wait = asked_wait(response.headers());
        let text = response.text().await.unwrap_or_default();
        (
            crate::http::error_kind(code),
            status_error(self.name(), code, wait, &text),
        )
    }
}

pub(super) use crate::http::status_error;

/// `id` (a provider's batch or file id) if it is safe to put in a path:
/// a letter or digit, then letters, digits, `-`, `_` and `.` only.
pub(super) fn path_id<'a>(client: &BatchClient, id: &'a str) -> Result<&'a str, ProviderError> {
    let safe = id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if safe {
        Ok(id)
    } else {
        Err(client.terminal(format!("{id:?} is not a batch or file id")))
    }
}
