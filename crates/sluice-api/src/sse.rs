//! Streaming a job to its caller as Server-Sent Events, in OpenAI's shape
//! (`stream: true` on chat and completions): `data: {chunk}` events, then
//! `data: [DONE]`.
//!
//! The worker relays its provider call's chunks into the job's chunk log
//! (`sluice_core::stream`), and any API process reads them from there: the
//! caller's connection is held by whichever replica took the request. The
//! response starts with the first chunk; until then the job may still end
//! without one (refused, failed, answered in one piece), and is answered
//! as a call without `stream` would be, or streamed from its result
//! ([`replay`]). Once streaming, a job that fails, a call restarted after
//! chunks went out (a retry, a redelivery), or a chunk log that stops short
//! ends the stream with an error event in OpenAI's shape: the job goes on,
//! and `GET /v1/jobs/{id}` has its whole answer. A caller that hangs up
//! does not cancel the job.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_core::stream::{chunks_of, for_client, StreamEntry};
use sluice_core::{Endpoint, JobId, JobRecord, JobStatus};
use sluice_store::jobs::{ChunkPosition, Watch};

use crate::problem::ApiError;
use crate::read::{own_job, RECHECK_EVERY};
use crate::state::AppState;

/// Entries read from the chunk log at once.
const READ_BATCH: usize = 512;

/// What the caller asked of a stream.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    pub endpoint: Endpoint,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// How a streaming job's answer starts.
pub enum Start {
    /// Its first chunk came: the response streams the rest as it comes.
    Streaming(Response),
    /// It ended before any chunk, or `wait` passed: the caller answers it.
    Ended(Box<JobRecord>),
}

/// Waits up to `wait` for the tenant's job `id` to stream its first chunk
/// or to end.
pub async fn start(
    state: AppState,
    tenant: &str,
    id: JobId,
    asked: Asked,
    wait: Duration,
) -> Result<Start, ApiError> {
    // Watch first, then read: an append or an end between the two wakes.
    let watch = state.store.watch(id);
    let mut relay = Relay {
        state,
        id,
        asked,
        watch,
        after: None,
        out: VecDeque::new(),
        begun: false,
        sent: false,
        complete: false,
        over: false,
    };
    let until = tokio::time::Instant::now() + wait;
    loop {
        relay.read().await?;
        if !relay.out.is_empty() {
            return Ok(Start::Streaming(relay.respond()));
        }
        let job = Box::pin(own_job(&relay.state, tenant, id)).await?;
        if job.status.is_terminal() {
            // Chunks written before the end are read before it is believed.
            relay.read().await?;
            if relay.out.is_empty() {
                return Ok(Start::Ended(Box::new(job)));
            }
            return Ok(Start::Streaming(relay.respond()));
        }
        let now = tokio::time::Instant::now();
        if now >= until || relay.state.shutdown.is_cancelled() {
            return Ok(Start::Ended(Box::new(job)));
        }
        tokio::select! {
            () = relay.watch.changed() => {}
            () = tokio::time::sleep_until(until.min(now + RECHECK_EVERY)) => {}
            () = relay.state.shutdown.cancelled() => {}
        }
    }
}

/// A finished answer, streamed from its result: the whole content in one
/// chunk per choice (a cache hit, a job that joined another, a provider
/// that answered in one piece).
pub fn replay(job_id: JobId, result: &Value, asked: Asked) -> Response {
    let mut events: Vec<Bytes> = chunks_of(asked.endpoint, result)
        .into_iter()
        .filter_map(|chunk| for_client(chunk, asked.include_usage))
        .map(|chunk| event(&chunk))
        .collect();
    events.push(Bytes::from_static(DONE));
    let body = Body::from_stream(futures::stream::iter(
        events.into_iter().map(Ok::<_, Infallible>),
    ));
    sse_response(job_id, body)
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// One `data:` event.
fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The error event OpenAI sends when a stream fails midway; its SDKs raise
/// it as an `APIError`.
fn error_event(message: String) -> Bytes {
    event(
        &json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}),
    )
}

fn sse_response(job_id: JobId, body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::from_str(&job_id.to_string()) {
        headers.insert("sluice-job-id", id);
    }
    response
}

/// A job's chunk log, read on as it grows into events for the caller.
struct Relay {
    state: AppState,
    id: JobId,
    asked: Asked,
    watch: Watch,
    after: Option<ChunkPosition>,
    /// Events read, not yet sent.
    out: VecDeque<Bytes>,
    /// A provider call has begun streaming.
    begun: bool,
    /// A chunk went out to the caller (or is queued to).
    sent: bool,
    /// The provider's last chunk (with the usage) was read.
    complete: bool,
    /// The stream has said its last event.
    over: bool,
}

impl Relay {
    /// Reads what the log holds past the last read, into events.
    async fn read(&mut self) -> Result<(), sluice_store::StoreError> {
        loop {
            let entries = self
                .state
                .store
                .read_chunks(self.id, self.after.as_ref(), READ_BATCH)
                .await?;
            let full = entries.len() == READ_BATCH;
            for (position, entry) in entries {
                self.after = Some(position);
                self.take(entry);
                if self.over {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn take(&mut self, entry: StreamEntry) {
        match entry {
            StreamEntry::Begin if self.begun && self.sent => {
                self.end_with_error(format!(
                    "the provider call restarted after its answer had begun; \
                     the job goes on: its whole answer will be at GET /v1/jobs/{}",
                    self.id
                ));
            }
            StreamEntry::Begin => self.begun = true,
            StreamEntry::Chunk(text) => {
                let Ok(chunk) = serde_json::from_str::<Value>(&text) else {
                    return;
                };
                if chunk.get("usage").is_some_and(|u| !u.is_null()) {
                    self.complete = true;
                }
                if let Some(chunk) = for_client(chunk, self.asked.include_usage) {
                    self.out.push_back(event(&chunk));
                    self.sent = true;
                }
            }
        }
    }

    fn end_with_error(&mut self, message: String) {
        self.out.push_back(error_event(message));
        self.over = true;
    }

    /// The response: what was read, then the rest as it comes.
    fn respond(self) -> Response {
        let id = self.id;
        let events = futures::stream::unfold(self, |mut relay| async move {
            let event = relay.next().await?;
            Some((Ok::<_, Infallible>(event), relay))
        });
        sse_response(id, Body::from_stream(events))
    }

    /// The next event, once there is one; `None` after the last.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            if self.over {
                return None;
            }
            if let Err(e) = self.step().await {
                self.end_with_error(format!(
                    "the stream could not be read on ({e}); the job goes on: \
                     its answer will be at GET /v1/jobs/{}",
                    self.id
                ));
            }
        }
    }

    /// Reads on; at the job's end, says the last event.
    async fn step(&mut self) -> Result<(), sluice_store::StoreError> {
        self.read().await?;
        if !self.out.is_empty() || self.over {
            return Ok(());
        }
        let job = self.state.store.get(self.id).await?;
        let status = job.as_ref().map(|j| j.status);
        match status {
            Some(JobStatus::Succeeded) | None => {
                // Chunks written before the end are read before it is believed.
                self.read().await?;
                if !self.out.is_empty() || self.over {
                    return Ok(());
                }
                if self.complete && status.is_some() {
                    self.out.push_back(Bytes::from_static(DONE));
                    self.over = true;
                } else {
                    self.end_with_error(format!(
                        "the stream stopped short; the job's whole answer is at GET /v1/jobs/{}",
                        self.id
                    ));
                }
            }
            Some(status) if status.is_terminal() => {
                let why = job
                    .and_then(|j| j.error)
                    .map(|e| e.message)
                    .unwrap_or_else(|| format!("the job ended {status}"));
                self.end_with_error(why);
            }
            Some(_) => {
                if self.state.shutdown.is_cancelled() {
                    self.end_with_error(format!(
                        "the API is shutting down; the job goes on: its answer will be at GET /v1/jobs/{}",
                        self.id
                    ));
                    return Ok(());
                }
                tokio::select! {
                    () = self.watch.changed() => {}
                    () = tokio::time::sleep(RECHECK_EVERY) => {}
                    () = self.state.shutdown.cancelled() => {}
                }
            }
        }
        Ok(())
    }
}
