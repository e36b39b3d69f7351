//! One HTTP attempt: POST the signed body, with a timeout, reading at most
//! `max_response_bytes` of the answer. Names are resolved by a resolver
//! that refuses addresses the policy refuses, at connect time, so a name
//! that was public at submit and resolves to a private address now (DNS
//! rebinding) is refused too; redirects are not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use sluice_core::config::WebhooksConfig;
use sluice_core::webhook_address::AddressPolicy;

/// Resolves with the system resolver, then keeps only allowed addresses.
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check_ip(&host, addr.ip())?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// What an attempt came to.
#[derive(Debug)]
pub struct Answer {
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why it failed (no answer, or a non-2xx one with the start of its body).
    pub error: Option<String>,
    /// The receiver's `Retry-After` (on 429 and 503).
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
}

/// The full chain of an error, so a refused address says why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

impl Sender {
    pub fn new(config: &WebhooksConfig) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(config.policy());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(config.attempt_timeout_s))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver {
                policy: Arc::clone(&policy),
            }))
            .build()?;
        Ok(Self {
            client,
            policy,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// POSTs `body` to `url` with the Standard Webhooks headers.
    pub async fn post(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        signature: &str,
        body: String,
        trace_id: Option<&str>,
    ) -> Answer {
        let started = Instant::now();
        let failed = |error: String| Answer {
            status: None,
            latency: started.elapsed(),
            error: Some(error),
            retry_after: None,
        };
        let url = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("bad URL: {e}")),
        };
        // A literal address never reaches the resolver: check it here.
        if let Err(e) = self.policy.check_url(&url) {
            return failed(e);
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("sluice-webhooks"));
        // Each attempt is a new span in the job's trace.
        if let Some(trace) = trace_id {
            let traceparent = sluice_core::trace::TraceParent::in_trace(trace).to_string();
            if let Ok(v) = HeaderValue::from_str(&traceparent) {
                headers.insert("traceparent", v);
            }
        }
        for (name, value) in [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature.to_owned()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "no answer"
                };
                return failed(format!("{what}: {}", chain(&e)));
            }
        };
        let status = response.status().as_u16();
        let retry = matches!(status, 429 | 503)
            .then(|| retry_after(response.headers(), Utc::now()))
            .flatten();
        // Read at most the limit of the answer, then drop the connection.
        let mut head = Vec::new();
        while head.len() < self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        head.truncate(self.max_response_bytes);
        let ok = (200..300).contains(&status);
        Answer {
            status: Some(status),
            latency: started.elapsed(),
            error: (!ok).then(|| {
                let text = String::from_utf8_lossy(&head);
                let text: String = text.chars().take(300).collect();
                format!("answered {status}: {text}")
            }),
            retry_after: retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_to_a_refused_address_is_refused_when_connecting() {
        // `localhost` passes the URL check (it is a name); what it resolves
        // to at connect time does not.
        let post = |config: WebhooksConfig| async move {
            let sender = Sender::new(&config).unwrap();
            let url = "http://localhost:9/hook";
            sender
                .post(url, "msg_1", 0, "v1,x", "{}".into(), None)
                .await
        };
        let answer = post(WebhooksConfig::default()).await;
        assert_eq!(answer.status, None);
        let error = answer.error.unwrap();
        assert!(error.contains("loopback"), "{error}");
        // Allowed by name, it is attempted (and finds nothing listening).
        let config = WebhooksConfig {
            allow: vec!["localhost".into()],
            ..WebhooksConfig::default()
        };
        let answer = post(config).await;
        assert!(!answer.error.unwrap().contains("loopback"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = (now + chrono::Duration::seconds(60)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let got = retry_after(&h, now).unwrap();
        assert!(
            got > Duration::from_secs(55) && got <= Duration::from_secs(60),
            "{got:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
