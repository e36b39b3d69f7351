//! The HTTP side every adapter shares: a client with the provider's
//! timeout, a concurrency limit, the duration metric, and one mapping from
//! a failed call to a retry decision.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use sluice_core::budget::{BudgetLimits, Grant, RateBudget};
use sluice_core::config::ProviderConfig;
use sluice_core::metrics::Metrics;
use sluice_core::stream::StreamEntry;
use sluice_core::JobId;

use crate::decode::StreamDecoder;
use crate::limit::ConcurrencyLimit;
use crate::{ChunkRelay, ProviderError, SetupError};

/// The longest `Retry-After` honoured as given; longer asks are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The wait assumed for a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How much of an error body is kept for the job's error message.
const ERROR_BODY_LIMIT: usize = 2_000;
/// The longest a call waits for the fleet-wide budget before it gives up
/// (as a retry-after error, so the router backs off or falls back); well
/// under RabbitMQ's consumer timeout, since the jobs wait unacked.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(120);

pub struct ProviderHttp {
    name: String,
    base_url: String,
    api_key: Option<String>,
    client: reqwest::Client,
    /// Calls in flight to this provider from this process: fixed, or found
    /// against the latency target.
    limit: Arc<ConcurrencyLimit>,
    metrics: Arc<Metrics>,
    /// The fleet-wide budget and this provider's limits, if it has any.
    budget: Option<(Arc<dyn RateBudget>, BudgetLimits)>,
    /// Headers the config adds to every request.
    extra_headers: reqwest::header::HeaderMap,
    /// Told of each call just before it leaves.
    sent: Option<Arc<dyn crate::SendLog>>,
}

impl ProviderHttp {
    /// Reads the API key from the environment variable the config names;
    /// fails if it is unset.
    pub fn new(
        config: &ProviderConfig,
        metrics: Arc<Metrics>,
        budget: Option<Arc<dyn RateBudget>>,
        sent: Option<Arc<dyn crate::SendLog>>,
    ) -> Result<Self, SetupError> {
        let provider = || config.name.clone();
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| SetupError::MissingApiKey {
                provider: provider(),
                var: var.clone(),
            })?),
            None => None,
        };
        let mut extra_headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let bad = |reason: String| SetupError::BadHeader {
                provider: provider(),
                name: name.clone(),
                reason,
            };
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad(format!("not a header name: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| bad(format!("not a header value: {e}")))?;
            extra_headers.insert(header, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_s))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(if config.keep_alive {
                config.max_concurrency
            } else {
                0
            })
            .build()
            .map_err(|source| SetupError::Client {
                provider: provider(),
                source,
            })?;
        Ok(Self {
            name: config.name.clone(),
            base_url: config.base_url.as_str().trim_end_matches('/').to_owned(),
            api_key,
            client,
            limit: ConcurrencyLimit::new(
                config.max_concurrency,
                config.latency_target_ms.map(Duration::from_millis),
                metrics
                    .provider_concurrency_limit
                    .with_label_values(&[&config.name]),
            ),
            metrics,
            budget: budget
                .filter(|_| !config.budget().is_unlimited())
                .map(|b| (b, config.budget())),
            extra_headers,
            sent,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The base URL joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn transient(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Transient {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    /// A call given up on after its request reached the provider.
    pub fn abandoned(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Abandoned {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    pub fn terminal(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Terminal {
            provider: self.name.clone(),
            message: message.into(),
            rejection: None,
        }
    }

    /// Waits until the fleet-wide budget has room for one request of
    /// `tokens`. A budget store that fails is logged and not waited on: the
    /// provider's own limits (429) still stand behind it.
    async fn spend_budget(&self, tokens: u64) -> Result<(), ProviderError> {
        let Some((budget, limits)) = &self.budget else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            match budget.try_acquire(&self.name, limits, 1, tokens).await {
                Ok(Grant::Granted) => break,
                Ok(Grant::Wait(wait)) => {
                    if started.elapsed() + wait > MAX_BUDGET_WAIT {
                        return Err(ProviderError::RetryAfter {
                            provider: self.name.clone(),
                            after: wait,
                            message: "the fleet-wide budget stayed spent".into(),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(provider = %self.name, error = %e, "budget store unavailable; calling without it");
                    break;
                }
            }
        }
        self.metrics
            .provider_budget_wait
            .with_label_values(&[&self.name])
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// One POST of `body` for `jobs`, after taking `tokens` (and one
    /// request) from the fleet-wide budget and a connection slot, and
    /// telling the send log; the decoded JSON of a 2xx answer. `label`
    /// names the endpoint in the duration metric; `timeout` shortens the
    /// provider's own for this call (a flex call must end in time for a
    /// standard one).
    #[allow(clippy::too_many_arguments)]
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        label: &str,
        tokens: u64,
        jobs: &[JobId],
        timeout: Option<Duration>,
    ) -> Result<Value, ProviderError> {
        let request = async {
            let response = self.send(url, headers, body, timeout).await?;
            // A 2xx was billed, whatever became of its body.
            response.json::<Value>().await.map_err(|e| {
                let error = self.abandoned(format!("unreadable response body: {e}"));
                ("bad_response", error)
            })
        };
        self.metered(label, tokens, jobs, request).await
    }

    /// As [`post`](Self::post), for one job whose `body` streams: each
    /// batch of events that arrives together is read by `decoder` into
    /// OpenAI chunks (see `sluice_core::stream`), which go to `relay`, the
    /// first after a [`StreamEntry::Begin`]; the answer is the decoder's,
    /// the body a call without `stream` returns.
    #[allow(clippy::too_many_arguments)]
    pub async fn post_stream(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        label: &str,
        tokens: u64,
        job: JobId,
        relay: &dyn ChunkRelay,
        decoder: impl StreamDecoder,
    ) -> Result<Value, ProviderError> {
        let request = async {
            let response = self.send(url, headers, body, None).await?;
            self.relay_events(response, decoder, job, relay).await
        };
        self.metered(label, tokens, &[job], request).await
    }

    /// Reads a streaming answer's events with `decoder`, relaying its
    /// chunks, into the answer they amount to.
    async fn relay_events(
        &self,
        response: reqwest::Response,
        mut decoder: impl StreamDecoder,
        job: JobId,
        relay: &dyn ChunkRelay,
    ) -> Result<Value, (&'static str, ProviderError)> {
        // The provider answered 2xx and started: a stream cut short was
        // billed, one it ended with an error event (or we cannot read) is
        // the provider's refusal.
        let cut = |why: String| ("bad_response", self.abandoned(why));
        let broken = |why: String| ("bad_response", self.transient(why));
        let mut events = response.bytes_stream().eventsource().ready_chunks(64);
        let mut begun = false;
        let mut done = false;
        let mut chunks = Vec::new();
        while let Some(batch) = events.next().await {
            let mut entries = Vec::with_capacity(batch.len() + 1);
            if !begun {
                entries.push(StreamEntry::Begin);
                begun = true;
            }
            for event in batch {
                let event = event.map_err(|e| cut(format!("the stream broke off: {e}")))?;
                done = decoder
                    .event(&event.event, &event.data, &mut chunks)
                    .map_err(broken)?;
                entries.extend(chunks.drain(..).map(StreamEntry::Chunk));
                if done {
                    break;
                }
            }
            if !entries.is_empty() {
                relay.relay(job, entries).await;
            }
            if done {
                break;
            }
        }
        if !done {
            return Err(cut("the stream ended before its end event".into()));
        }
        decoder
            .finish()
            .map_err(|why| broken(format!("the stream ended early: {why}")))
    }

    /// Runs `request` after taking `tokens` (and one request) from the
    /// fleet-wide budget and a connection slot, and telling the send log,
    /// and records its duration and error kind.
    async fn metered(
        &self,
        label: &str,
        tokens: u64,
        jobs: &[JobId],
        request: impl std::future::Future<Output = Result<Value, (&'static str, ProviderError)>>,
    ) -> Result<Value, ProviderError> {
        self.spend_budget(tokens).await?;
        let permit = self.limit.acquire().await;
        if let Some(log) = &self.sent {
            log.sending(jobs).await;
        }
        let started = Instant::now();
        let result = request.await;
        // An answer's time, or a timeout's, is what the limit steers by; an
        // error says nothing of the provider's load.
        permit.done(match &result {
            Ok(_) | Err(("timeout", _)) => Some(started.elapsed()),
            Err(_) => None,
        });
        let outcome = match &result {
            Ok(_) => "ok",
            Err((_, ProviderError::Terminal { .. })) => "rejected",
            Err(_) => "unavailable",
        };
        self.metrics
            .provider_duration
            .with_label_values(&[&self.name, label, outcome])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|(kind, error)| {
            self.metrics
                .provider_errors
                .with_label_values(&[&self.name, label, kind])
                .inc();
            error
        })
    }

    /// One POST, answered 2xx; a failure comes with its kind for
    /// `sluice_provider_errors_total`.
    async fn send(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, (&'static str, ProviderError)> {
        let mut request = self
            .client
            .post(url)
            .json(body)
            .headers(self.extra_headers.clone());
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        // Past the connection, the request may have left, and then the
        // provider bills it whether or not its answer reaches us.
        let response =
            request
                .send()
                .await
                .map_err(|e| match (e.is_connect(), e.is_timeout()) {
                    (true, _) => ("connect", self.transient(format!("cannot connect: {e}"))),
                    (false, true) => ("timeout", self.abandoned("request timed out")),
                    (false, false) => ("connect", self.abandoned(format!("request failed: {e}"))),
                })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let code = status.as_u16();
        let error = status_error(&self.name, code, retry_after, &text);
        Err((error_kind(code), error))
    }
}

/// The kind of a refused call in `sluice_provider_errors_total`.
pub fn error_kind(status: u16) -> &'static str {
    match status {
        429 => "rate_limited",
        408 | 409 | 500..=599 => "server",
        _ => "rejected",
    }
}

/// The error a provider's `status` and error `body` stand for, for a call
/// or for one line of a batch: classified by status ([`classify`]), with
/// the provider's refusal attached to a terminal one. `wait` is what the
/// answer asked for.
pub fn status_error(
    provider: &str,
    status: u16,
    wait: Option<Duration>,
    body: &str,
) -> ProviderError {
    // OpenAI's and Anthropic's error bodies both carry `error.message`.
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(ERROR_BODY_LIMIT).collect());
    match classify(provider, status, wait, format!("HTTP {status}: {message}")) {
        ProviderError::Terminal {
            provider, message, ..
        } => ProviderError::Terminal {
            provider,
            message,
            rejection: Some(sluice_core::Rejection::from_body(status, body)),
        },
        other => other,
    }
}

/// The wait a response asks for: `retry-after-ms` (milliseconds, as
/// OpenAI's SDKs read it first) or else `Retry-After` (seconds), as given.
pub fn asked_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e12)
    };
    number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))
        .map(Duration::from_secs_f64)
}

/// The wait a provider asked for, at most a minute.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    asked_wait(headers).map(|d| d.min(MAX_RETRY_AFTER))
}

/// The retry decision for a failed HTTP status: 429 (and 503 with
/// `Retry-After`) waits as asked; 408, 409 and 5xx are worth a retry;
/// every other status fails the job at once.
pub fn classify(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    let provider = provider.to_owned();
    match (status, retry_after) {
        (429, after) | (503, after @ Some(_)) => ProviderError::RetryAfter {
            provider,
            after: after.unwrap_or(DEFAULT_RETRY_AFTER),
            message,
        },
        (408 | 409 | 500..=599, _) => ProviderError::Transient { provider, message },
        _ => ProviderError::Terminal {
            provider,
            message,
            rejection: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "350".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(350)));
        h.insert("retry-after-ms", "9000000".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
    }

    /// Serves `calls` minimal JSON answers on loopback; how many
    /// connections they came on.
    async fn connections_for(keep_alive: bool, calls: usize) -> usize {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/x", listener.local_addr().unwrap());
        let server = async move {
            let (mut served, mut accepted) = (0, 0);
            while served < calls {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut buf = vec![0; 4096];
                // One request per read; until the client closes it.
                while served < calls && socket.read(&mut buf).await.unwrap_or(0) > 0 {
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                  content-length: 2\r\n\r\n{}";
                    socket.write_all(answer.as_bytes()).await.unwrap();
                    served += 1;
                }
            }
            accepted
        };
        let text = format!(
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"{url}\"\n\
             keep_alive = {keep_alive}\n\n[[models]]\nname = \"m\"\nproviders = [\"p\"]\n"
        );
        let config = sluice_core::config::Config::parse(&text, "test").unwrap();
        let config = &config.providers[0];
        let http = ProviderHttp::new(config, Arc::new(Metrics::new()), None, None).unwrap();
        let client = async {
            for _ in 0..calls {
                let body = serde_json::json!({});
                http.post(&url, &[], &body, "x", 1, &[], None)
                    .await
                    .unwrap();
            }
        };
        let (accepted, ()) = tokio::join!(server, client);
        accepted
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection_and_off_opens_one_per_call() {
        assert_eq!(connections_for(true, 3).await, 1);
        assert_eq!(connections_for(false, 3).await, 3);
    }

    #[test]
    fn statuses_carry_their_retry_decision() {
        let c = |status, after| classify("p", status, after, String::new());
        assert_eq!(c(429, None).retry_after(), Some(DEFAULT_RETRY_AFTER));
        assert_eq!(
            c(429, Some(Duration::from_secs(7))).retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            c(503, Some(Duration::from_secs(2))).retry_after(),
            Some(Duration::from_secs(2))
        );
        for retryable in [408, 409, 500, 502, 503, 529] {
            assert!(c(retryable, None).is_retryable(), "{retryable}");
        }
        for terminal in [400, 401, 403, 404, 413, 422] {
            assert!(!c(terminal, None).is_retryable(), "{terminal}");
        }
    }
}
