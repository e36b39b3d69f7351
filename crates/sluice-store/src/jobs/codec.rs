//! A job record as the fields of a Redis hash: the parts that never change
//! in `meta` (JSON), each mutable part in a field of its own, so that the
//! state-change scripts can set them without parsing JSON.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::job::{Ending, Metadata, Outcome};
use sluice_core::webhook::JobWebhook;
use sluice_core::{Endpoint, JobError, JobId, JobRecord, Priority, Usage};

use crate::StoreError;

#[derive(Serialize, Deserialize)]
struct Meta {
    id: JobId,
    tenant_id: String,
    #[serde(default)]
    key_id: Option<String>,
    endpoint: Endpoint,
    model: String,
    priority: Priority,
    #[serde(default)]
    metadata: Metadata,
    created_at: DateTime<Utc>,
    #[serde(default)]
    deadline_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook: Option<JobWebhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `value` as JSON text; an error, never an empty field, if it cannot be.
fn json<T: Serialize>(field: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::unencodable(field, &e))
}

/// The fields of a fresh record.
pub fn encode_new(r: &JobRecord) -> Result<Vec<(String, String)>, StoreError> {
    let meta = Meta {
        id: r.id,
        tenant_id: r.tenant_id.clone(),
        key_id: r.key_id.clone(),
        endpoint: r.endpoint,
        model: r.model.clone(),
        priority: r.priority,
        metadata: r.metadata.clone(),
        created_at: r.created_at,
        deadline_at: r.deadline_at,
        webhook: r.webhook.clone(),
        trace_id: r.trace_id.clone(),
    };
    let mut fields = vec![
        ("meta".to_owned(), json("meta", &meta)?),
        ("status".to_owned(), r.status.as_str().to_owned()),
        ("attempts".to_owned(), r.attempts.to_string()),
    ];
    if let Some(d) = r.deadline_at {
        fields.push(("deadline_ms".to_owned(), d.timestamp_millis().to_string()));
    }
    // A record created already ended (a cache hit) carries its end too.
    for (name, time) in [("started_at", r.started_at), ("finished_at", r.finished_at)] {
        if let Some(t) = time {
            fields.push((name.to_owned(), rfc3339(t)));
        }
    }
    fields.extend(ending_fields(&r.ending())?);
    Ok(fields)
}

/// The fields an outcome sets besides status and finish time.
pub fn encode_outcome(outcome: &Outcome) -> Result<Vec<(String, String)>, StoreError> {
    ending_fields(&outcome.ending())
}

/// The fields of what an end shows (those it has).
fn ending_fields(e: &Ending) -> Result<Vec<(String, String)>, StoreError> {
    let mut fields = Vec::new();
    if let Some(result) = &e.result {
        fields.push(("result".to_owned(), json("result", result)?));
    }
    if let Some(usage) = &e.usage {
        fields.push(("usage".to_owned(), json("usage", usage)?));
    }
    if let Some(provider) = &e.provider {
        fields.push(("provider".to_owned(), provider.clone()));
    }
    if let Some(cost) = e.cost_micros {
        fields.push(("cost_micros".to_owned(), cost.to_string()));
    }
    if let Some(tier) = e.tier {
        fields.push(("tier".to_owned(), tier.as_str().to_owned()));
    }
    if let Some(error) = &e.error {
        fields.push(("error".to_owned(), json("error", error)?));
    }
    if let Some(cache) = &e.cache {
        fields.push(("cache".to_owned(), json("cache", cache)?));
    }
    Ok(fields)
}

pub fn encode_error(error: &JobError) -> Result<String, StoreError> {
    json("error", error)
}

fn parse<T: for<'de> Deserialize<'de>>(field: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("field {field}: {e}")))
}

fn time(field: &str, text: Option<&String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("field {field}: {e}")))
    })
    .transpose()
}

/// A record from its hash; `None` for an empty hash (no such key).
pub fn decode(fields: &HashMap<String, String>) -> Result<Option<JobRecord>, StoreError> {
    let Some(meta) = fields.get("meta") else {
        return Ok(None);
    };
    let meta: Meta = parse("meta", meta)?;
    let status = fields
        .get("status")
        .ok_or_else(|| StoreError::Corrupt("no status".into()))?
        .parse()
        .map_err(StoreError::Corrupt)?;
    let attempts = fields
        .get("attempts")
        .map(|a| a.parse::<u32>())
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("field attempts: {e}")))?
        .unwrap_or(0);
    Ok(Some(JobRecord {
        id: meta.id,
        tenant_id: meta.tenant_id,
        key_id: meta.key_id,
        status,
        endpoint: meta.endpoint,
        model: meta.model,
        priority: meta.priority,
        metadata: meta.metadata,
        created_at: meta.created_at,
        deadline_at: meta.deadline_at,
        webhook: meta.webhook,
        trace_id: meta.trace_id,
        started_at: time("started_at", fields.get("started_at"))?,
        finished_at: time("finished_at", fields.get("finished_at"))?,
        attempts,
        sent: fields
            .get("sent")
            .map(|s| parse_attempts(s))
            .transpose()?
            .unwrap_or_default(),
        result: fields
            .get("result")
            .map(|r| parse("result", r))
            .transpose()?,
        error: fields.get("error").map(|e| parse("error", e)).transpose()?,
        usage: fields
            .get("usage")
            .map(|u| parse::<Usage>("usage", u))
            .transpose()?,
        provider: fields.get("provider").cloned(),
        cost_micros: fields
            .get("cost_micros")
            .map(|c| c.parse::<u64>())
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("field cost_micros: {e}")))?,
        tier: fields
            .get("tier")
            .map(|t| t.parse())
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("field tier: {e}")))?,
        cached: fields.contains_key("cache"),
        cache: fields.get("cache").map(|c| parse("cache", c)).transpose()?,
    }))
}

/// A list of attempt numbers as the scripts keep it: `1,2,3`.
pub(super) fn parse_attempts(text: &str) -> Result<Vec<u32>, StoreError> {
    text.split(',')
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse()
                .map_err(|e| StoreError::Corrupt(format!("attempt list {text:?}: {e}")))
        })
        .collect()
}
