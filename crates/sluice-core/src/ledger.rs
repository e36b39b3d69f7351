//! A row of the usage ledger: what one finished job used and cost, with
//! the labels reports group by.

use chrono::{DateTime, Utc};

use crate::job::Metadata;
use crate::{Endpoint, JobId, JobRecord, JobStatus, Usage};

#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRow {
    pub job_id: JobId,
    pub tenant_id: String,
    pub key_id: Option<String>,
    pub model: String,
    pub provider: Option<String>,
    pub endpoint: Endpoint,
    pub metadata: Metadata,
    pub status: JobStatus,
    pub usage: Usage,
    pub cost_micros: u64,
    /// What a cache hit saved (0 for a job a provider ran).
    pub saved_micros: u64,
    pub cache_hit: bool,
    pub queue_wait_ms: Option<u64>,
    pub provider_latency_ms: Option<u64>,
    pub finished_at: DateTime<Utc>,
}

impl LedgerRow {
    /// The row of an ended job, from its record; `None` while it runs.
    pub fn from_record(record: &JobRecord, provider_latency_ms: Option<u64>) -> Option<Self> {
        if !record.status.is_terminal() {
            return None;
        }
        let queue_wait_ms = record
            .started_at
            .map(|s| u64::try_from((s - record.created_at).num_milliseconds()).unwrap_or(0));
        Some(Self {
            job_id: record.id,
            tenant_id: record.tenant_id.clone(),
            key_id: record.key_id.clone(),
            model: record.model.clone(),
            provider: record.provider.clone(),
            endpoint: record.endpoint,
            metadata: record.metadata.clone(),
            status: record.status,
            // A cached answer's tokens were billed once, to its source job.
            usage: if record.cached {
                Usage::default()
            } else {
                record.usage.unwrap_or_default()
            },
            cost_micros: record.cost_micros.unwrap_or(0),
            saved_micros: record.cache.as_ref().map_or(0, |c| c.saved_micros),
            cache_hit: record.cached,
            queue_wait_ms,
            provider_latency_ms,
            finished_at: record.finished_at.unwrap_or(record.created_at),
        })
    }

    /// A string label from the metadata (`feature`, `route`), if set.
    pub fn label(&self, name: &str) -> Option<String> {
        self.metadata
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}
