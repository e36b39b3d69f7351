//! A webhook receiver for the tests: it checks every signature with its
//! own implementation of the Standard Webhooks spec (hmac + sha2 + base64
//! here, not Sluice's), records each attempt, and answers as told.

#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::Client;

/// What the receiver does with the attempts of each webhook-id.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// 200 at once.
    Accept,
    /// 500 for the first N attempts of each webhook-id, then 200.
    FailFirst(usize),
    /// 503 always.
    Down,
    /// Holds each request until released, then 200.
    Hold,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub id: String,
    pub valid_signature: bool,
    pub body: Value,
    pub answered: u16,
    pub traceparent: Option<String>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub secret: Arc<Mutex<String>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<tokio::sync::Notify>,
    pub held: Arc<std::sync::atomic::AtomicUsize>,
}

/// The Standard Webhooks check, written from the spec: any `v1,` signature
/// in the header equals base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
/// where key is the base64 after `whsec_`.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sigs) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| B64.decode(k).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono_now() - t).abs() < 300);
    fresh && sigs.split(' ').any(|s| s == expected)
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let valid = verify(&r.secret.lock().unwrap(), &headers, &body);
    let earlier = r.seen.lock().unwrap().iter().filter(|s| s.id == id).count();
    let behaviour = *r.behaviour.lock().unwrap();
    let status = match behaviour {
        Behaviour::Accept => StatusCode::OK,
        Behaviour::FailFirst(n) if earlier < n => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::FailFirst(_) => StatusCode::OK,
        Behaviour::Down => StatusCode::SERVICE_UNAVAILABLE,
        Behaviour::Hold => {
            r.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r.release.notified().await;
            StatusCode::OK
        }
    };
    r.seen.lock().unwrap().push(Seen {
        id,
        valid_signature: valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: status.as_u16(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    status
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            secret: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            seen: Arc::default(),
            release: Arc::default(),
            held: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds of what was seen (at most `secs`).
    pub async fn until(&self, secs: u64, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = self.seen();
            if done(&seen) || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": prompt}]}})
}

pub fn hooked(prompt: &str, url: &str) -> Value {
    let mut job = chat(prompt);
    job["webhook"] = json!({"url": url});
    job
}

pub async fn with_secret(client: &Client, receiver: &Receiver) {
    let r = client.post("/v1/webhook-secret", &json!({})).await;
    assert_eq!(r.status, 201, "{r:?}");
    *receiver.secret.lock().unwrap() = r.body["secret"].as_str().unwrap().to_owned();
}

/// Distinct webhook-ids answered 2xx.
pub fn delivered(seen: &[Seen]) -> HashMap<String, Seen> {
    seen.iter()
        .filter(|s| s.answered == 200)
        .map(|s| (s.id.clone(), s.clone()))
        .collect()
}

pub async fn deliveries(client: &Client, job: &str) -> Vec<Value> {
    let r = client.get(&format!("/v1/jobs/{job}/deliveries")).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["data"].as_array().unwrap().clone()
}

/// Polls a job's deliveries until the first is in `state`.
pub async fn delivery_in(client: &Client, job: &str, state: &str) -> Value {
    for _ in 0..200 {
        let all = deliveries(client, job).await;
        if let Some(d) = all.first().filter(|d| d["state"] == state) {
            return d.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {job}'s delivery never got to {state}: {:?}",
        deliveries(client, job).await
    );
}

/// A stack with the webhooks role and `workers` workers, and a tenant
/// whose signing secret `receiver` knows.
pub async fn signed_stack(receiver: &Receiver, workers: usize) -> (crate::Stack, Client) {
    let (stack, client) = crate::acme_stack(crate::StackOptions {
        workers,
        webhooks: true,
        ..crate::StackOptions::default()
    })
    .await;
    with_secret(&client, receiver).await;
    (stack, client)
}
