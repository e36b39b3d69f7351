//! Stage 1, validate: each submitted envelope becomes a [`NewJob`] (its
//! record, its message and the cache's part in it), with every check a
//! caller can fail: the batch's size, the envelope, the endpoint, the
//! model, the body, the deadline, the webhook URL's form, the cache options.
//!
//! Refuses: 422 (`invalid-request`, `missing-model`, `unknown-model`,
//! `unknown-endpoint`, `invalid-webhook`); a batch with one bad job is
//! refused whole, naming `jobs[i]`. Writes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::batching::is_array_input;
use sluice_core::cache::CacheOptions;
use sluice_core::config::Config;
use sluice_core::job::Metadata;
use sluice_core::{Endpoint, JobId, JobMessage, JobRecord, Priority};
use utoipa::ToSchema;

use sluice_store::tenants::Principal;

use crate::cache::plan::{plan, CachePlan};
use crate::problem::ApiError;

use super::outcome::Envelopes;

/// The longest deadline a job may ask for.
const MAX_DEADLINE_S: f64 = 7.0 * 86_400.0;

/// A job as submitted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `/v1/chat/completions` (default), `/v1/completions` or `/v1/embeddings`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The OpenAI-shaped request body, with `model`.
    #[schema(value_type = Object)]
    pub body: Value,
    /// Free-form labels (feature, route, …), returned with the job.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// `interactive`, `standard` or `batch`; by default the key's default
    /// class (`sluice admin key priority`), else `standard`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Seconds from now by which the job must be answered: a job that can
    /// wait goes out on a cheaper tier (flex) when its provider sells one,
    /// and one still queued then ends as `expired`. A `batch` job without
    /// one gets the config's `jobs.batch_deadline_s` (24 h by default).
    #[serde(default)]
    pub deadline_s: Option<f64>,
    /// Where to POST the job's end, signed (Standard Webhooks). Without
    /// one, the tenant's registered endpoints get it.
    #[serde(default)]
    pub webhook: Option<sluice_core::webhook::WebhookSpec>,
    /// What the cache may do for this job (`mode`, `ttl_s`, `semantic`).
    #[serde(default)]
    pub cache: Option<CacheOptions>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(value_type = Vec<JobRequest>)]
    pub jobs: Vec<Value>,
}

/// A checked job, not yet accepted: what the later stages store and publish.
pub struct NewJob {
    pub record: JobRecord,
    pub message: JobMessage,
    /// The cache's part in it, if it takes one.
    pub cache: Option<CachePlan>,
}

impl NewJob {
    /// Its estimated prompt tokens, as the tenant's token limit counts them.
    pub fn tokens(&self) -> u64 {
        sluice_core::batching::request_tokens(self.message.endpoint, &self.message.body)
    }

    /// The AMQP headers the message carries.
    pub fn headers(&self) -> BTreeMap<String, String> {
        let m = &self.message;
        let mut h = m.headers();
        // The API's span of this request is the worker's parent.
        let parent = crate::trace::current()
            .filter(|tp| tp.trace_id == m.trace_id)
            .unwrap_or_else(|| sluice_core::trace::TraceParent::in_trace(&m.trace_id));
        h.insert(sluice_core::trace::HEADER.to_owned(), parent.to_string());
        h
    }
}

/// Checks every envelope of a submission; one bad job refuses them all.
pub(super) fn check_all(
    envelopes: Envelopes,
    config: &Config,
    caller: &Principal,
    trace_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<NewJob>, ApiError> {
    let raws = match envelopes {
        Envelopes::One(raw) => return Ok(vec![check(raw, config, caller, trace_id, now)?]),
        Envelopes::Batch(raws) => raws,
    };
    let max = config.api.max_batch_jobs;
    if raws.is_empty() || raws.len() > max {
        return Err(ApiError::InvalidRequest(format!(
            "a batch holds 1 to {max} jobs (got {})",
            raws.len()
        )));
    }
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| {
            check(raw, config, caller, trace_id, now).map_err(|e| {
                let p = e.problem();
                ApiError::InvalidRequest(format!("jobs[{i}]: {}: {}", p.title, p.detail))
            })
        })
        .collect()
}

/// Checks one line of a Batch API batch (its job envelope, as JSON) for
/// `caller`: the job gets the line's own `id`, fixed before any job of the
/// batch was made, and the batch's window as its deadline.
pub(crate) fn check_line(
    raw: Value,
    config: &Config,
    caller: &Principal,
    trace_id: &str,
    id: JobId,
    deadline_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<NewJob, ApiError> {
    let mut job = check(raw, config, caller, trace_id, now)?;
    job.record.id = id;
    job.record.deadline_at = Some(deadline_at);
    job.message.id = id;
    job.message.deadline_at = Some(deadline_at);
    Ok(job)
}

/// Checks one job envelope (as JSON) for `caller`.
fn check(
    raw: Value,
    config: &Config,
    caller: &Principal,
    trace_id: &str,
    now: DateTime<Utc>,
) -> Result<NewJob, ApiError> {
    let (tenant_id, key_id) = (caller.tenant_id.as_str(), caller.key_id.as_str());
    let request: JobRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::InvalidRequest(format!("the job is not valid: {e}")))?;
    let endpoint: Endpoint = request
        .endpoint
        .as_deref()
        .unwrap_or("/v1/chat/completions")
        .parse()
        .map_err(|e: sluice_core::job::UnknownEndpoint| ApiError::UnknownEndpoint(e.to_string()))?;
    let body = request.body;
    if !body.is_object() {
        return Err(ApiError::InvalidRequest(
            "`body` must be a JSON object".into(),
        ));
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::MissingModel(
                "`body.model` must be a non-empty string".into(),
            ))
        }
        None => return Err(ApiError::MissingModel("`body.model` is required".into())),
    };
    if config.route(&model).is_none() {
        let known: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError::UnknownModel(format!(
            "no route for model {model:?}; known models: {}",
            known.join(", ")
        )));
    }
    check_body(endpoint, &body)?;
    let cache = plan(
        config,
        caller,
        endpoint,
        &model,
        &body,
        request.cache.as_ref(),
    )?;
    // The job's own class, else its key's default, else standard.
    let priority = request
        .priority
        .or(caller.default_priority)
        .unwrap_or_default();
    let deadline_at = match request.deadline_s {
        // A batch job may wait: for as long as the config lets it.
        None if priority == Priority::Batch => {
            let wait = i64::try_from(config.jobs.batch_deadline_s).unwrap_or(i64::MAX);
            Some(now + chrono::Duration::seconds(wait))
        }
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_DEADLINE_S => {
            Some(now + chrono::Duration::milliseconds((s * 1000.0) as i64))
        }
        Some(s) => {
            return Err(ApiError::InvalidRequest(format!(
                "`deadline_s` must be above 0 and at most {MAX_DEADLINE_S} (got {s})"
            )))
        }
    };
    let webhook = match request.webhook {
        None => None,
        Some(spec) => {
            config
                .webhooks
                .policy()
                .check_url(&spec.url)
                .map_err(ApiError::InvalidWebhook)?;
            if spec.events.is_empty() {
                return Err(ApiError::InvalidWebhook(
                    "`webhook.events` is empty; leave it out for every terminal event".into(),
                ));
            }
            Some(sluice_core::webhook::JobWebhook::Url(spec))
        }
    };
    let id = JobId::new();
    let metadata = request.metadata.unwrap_or_default();
    let mut record = JobRecord::queued(
        id,
        tenant_id.to_owned(),
        endpoint,
        model,
        priority,
        metadata,
        now,
        deadline_at,
    );
    record.key_id = Some(key_id.to_owned());
    record.trace_id = Some(trace_id.to_owned());
    record.webhook = webhook;
    let message = JobMessage {
        cache: cache.as_ref().map(CachePlan::directive),
        share: caller.share(),
        ..JobMessage::of(&record, body)
    };
    Ok(NewJob {
        record,
        message,
        cache,
    })
}

/// The body fields each endpoint cannot do without.
fn check_body(endpoint: Endpoint, body: &Value) -> Result<(), ApiError> {
    // The OpenAI-compatible routes take `stream: true` out of the body
    // (chat and completions stream from there); a job read by polling
    // cannot stream.
    if body.get("stream").is_some_and(|s| *s != Value::Bool(false)) {
        return Err(ApiError::InvalidRequest(
            "`stream` must be false or absent here: streams are served on \
             /v1/chat/completions and /v1/completions"
                .into(),
        ));
    }
    let ok = match endpoint {
        Endpoint::ChatCompletions => body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty()),
        Endpoint::Completions => body.get("prompt").is_some_and(is_array_input),
        Endpoint::Embeddings => body.get("input").is_some_and(is_array_input),
    };
    if ok {
        return Ok(());
    }
    let need = match endpoint {
        Endpoint::ChatCompletions => "`body.messages` (a non-empty array)",
        Endpoint::Completions => {
            "`body.prompt` (a string, or a non-empty array of strings, of token ids or of token-id arrays)"
        }
        Endpoint::Embeddings => {
            "`body.input` (a string, or a non-empty array of strings, of token ids or of token-id arrays)"
        }
    };
    Err(ApiError::InvalidRequest(format!("{endpoint} needs {need}")))
}
