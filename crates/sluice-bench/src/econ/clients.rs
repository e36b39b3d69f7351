//! How a user's request reaches a model: straight to the provider, as an
//! SDK sends it, or through Sluice (submit, then long-poll).

use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

/// The SDK's retry rule (OpenAI's Python SDK): two retries; the provider's
/// `retry-after-ms` / `Retry-After` when it gives one of at most a minute,
/// else 0.5 s doubling to at most 8 s, less up to a quarter of jitter.
const SDK_RETRIES: u32 = 2;
const SDK_FIRST_DELAY: Duration = Duration::from_millis(500);
const SDK_MAX_DELAY: Duration = Duration::from_secs(8);
const SDK_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// Why not, in a few words (a status, "timeout", …).
    Failed(String),
}

/// A user's way to the model.
#[derive(Clone)]
pub enum Client {
    /// Synchronous calls to the provider's chat endpoint.
    Direct {
        http: reqwest::Client,
        url: String,
        /// The run's time scale, applied to the SDK's own delays.
        scale: f64,
    },
    /// Jobs submitted to Sluice's API and long-polled.
    Sluice {
        http: reqwest::Client,
        api: String,
        key: String,
        /// The job's `cache` options, if any (`{"mode": "off"}`).
        cache: Option<Value>,
    },
}

impl Client {
    /// Sends `body` as `model` and waits for its answer until `timeout`;
    /// if it `may_wait`, it is background work that may wait that long
    /// (Sluice gets it as a `batch` job with `deadline_s`; a direct caller
    /// has no cheaper way and calls as for any other).
    pub async fn call(
        &self,
        model: &str,
        body: &Value,
        labels: &Value,
        may_wait: Option<Duration>,
        timeout: Duration,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        let mut body = body.clone();
        body["model"] = json!(model);
        let outcome = match self {
            Self::Direct { http, url, scale } => {
                tokio::time::timeout_at(deadline, direct(http, url, *scale, &body)).await
            }
            Self::Sluice {
                http,
                api,
                key,
                cache,
            } => {
                let mut job = match may_wait {
                    Some(wait) => json!({"body": body, "metadata": labels, "priority": "batch",
                                         "deadline_s": wait.as_secs_f64()}),
                    None => json!({"body": body, "metadata": labels, "priority": "interactive"}),
                };
                if let Some(cache) = cache {
                    job["cache"] = cache.clone();
                }
                tokio::time::timeout_at(deadline, sluice(http, api, key, &job, deadline)).await
            }
        };
        outcome.unwrap_or_else(|_| Outcome::Failed("timeout".into()))
    }
}

/// One chat call, retried as the SDK retries 429s, 408s, 409s and 5xx.
async fn direct(http: &reqwest::Client, url: &str, scale: f64, body: &Value) -> Outcome {
    let mut retry = 0;
    loop {
        let (why, retryable, wait) = match http.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => {
                // Read the answer, as a caller would.
                return match r.bytes().await {
                    Ok(_) => Outcome::Answered,
                    Err(e) => Outcome::Failed(format!("body: {e}")),
                };
            }
            Ok(r) => {
                let status = r.status();
                let retryable =
                    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error();
                (
                    status.as_u16().to_string(),
                    retryable,
                    asked_wait(r.headers()),
                )
            }
            Err(e) => (format!("connect: {e}"), true, None),
        };
        if !retryable || retry == SDK_RETRIES {
            return Outcome::Failed(why);
        }
        let backoff = SDK_FIRST_DELAY
            .saturating_mul(1 << retry)
            .min(SDK_MAX_DELAY)
            .mul_f64(1.0 - 0.25 * rand::thread_rng().gen::<f64>())
            .mul_f64(scale);
        // The provider's wait is already in the run's time.
        tokio::time::sleep(wait.unwrap_or(backoff)).await;
        retry += 1;
    }
}

/// The wait a 429 asks for, when it is one the SDK honours (above zero,
/// at most a minute; otherwise its own backoff).
fn asked_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    sluice_providers::http::asked_wait(headers)
        .filter(|d| !d.is_zero() && *d <= SDK_MAX_RETRY_AFTER)
}

/// Submits the job and long-polls it to its end.
async fn sluice(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    job: &Value,
    deadline: Instant,
) -> Outcome {
    let submitted = match http
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(key)
        .json(job)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("connect: {e}")),
    };
    let status = submitted.status().as_u16();
    let mut view: Value = match submitted.json().await {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("{status}: {e}")),
    };
    if status != 200 && status != 202 {
        return Outcome::Failed(status.to_string());
    }
    let Some(id) = view["id"].as_str().map(str::to_owned) else {
        return Outcome::Failed("no job id".into());
    };
    loop {
        match view["status"].as_str() {
            Some("succeeded") => return Outcome::Answered,
            Some("queued" | "running") => {}
            other => return Outcome::Failed(other.unwrap_or("no status").to_owned()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.as_secs().clamp(1, 60);
        view = match http
            .get(format!("{api}/v1/jobs/{id}?wait={wait}"))
            .bearer_auth(key)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => v,
                Err(e) => return Outcome::Failed(format!("poll: {e}")),
            },
            Ok(r) => return Outcome::Failed(format!("poll {}", r.status().as_u16())),
            Err(e) => return Outcome::Failed(format!("poll: {e}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_honours_short_waits_only() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(asked_wait(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(asked_wait(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(asked_wait(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after-ms", "120000".parse().unwrap());
        assert_eq!(asked_wait(&h), None);
    }
}
