//! A row of the usage ledger: what one finished job (or one provider call
//! made for no job, such as a semantic lookup's embedding, or a job's
//! repeated call) used and cost, with the labels reports group by. Every
//! row is made here, by [`LedgerRow::for_job`], [`LedgerRow::from_record`],
//! [`LedgerRow::for_call`] or [`LedgerRow::for_repeat`], so that every row
//! means the same.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::job::{Metadata, Outcome};
use crate::repeat::{Estimate, Orphan};
use crate::{Endpoint, JobId, JobMessage, JobRecord, JobStatus, Tier, Usage};

/// How long a job waited in the queue: from its enqueueing (when the API
/// accepted it: its message's `enqueued_at`, its record's `created_at`)
/// to the moment a worker started it (`started_at`). A job that never
/// started (it joined an identical one, or was canceled or expired while
/// queued) has none. The two instants come from different hosts' clocks,
/// so a wait that comes out negative is counted as 0.
///
/// This is the one definition: the ledger's `queue_wait_ms` and the
/// `sluice_queue_wait_seconds` metric both use it.
pub fn queue_wait(
    enqueued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
) -> Option<Duration> {
    started_at.map(|started| (started - enqueued_at).to_std().unwrap_or(Duration::ZERO))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A provider call made for no job of its own (a semantic lookup's
/// embedding), to be billed to the tenant that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The call's own id (time-sortable, like a job's).
    pub id: JobId,
    pub tenant_id: String,
    pub key_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub endpoint: Endpoint,
    pub metadata: Metadata,
    pub usage: Usage,
    pub cost_micros: u64,
}

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
    /// 0 for the job's own row (the call whose answer it kept, or none);
    /// `n` for its `n`-th attempt when that was a repeated call: one the
    /// provider billed beyond the job's own (see [`crate::repeat`]).
    pub attempt: u32,
    /// 0, but for a call that attempt `attempt`'s router gave up on after
    /// its request reached the provider ([`Repeat::Abandoned`]): its number
    /// among those, from 1. A row is keyed by job, attempt and this.
    pub call_index: u32,
    /// The part of the cost that is an estimate (`cost_micros` holds the
    /// exact part), and how it was estimated.
    pub estimated_micros: u64,
    pub estimated_by: Option<Estimate>,
    /// The tier that answered (`None` for a job that was not answered).
    pub tier: Option<Tier>,
}

/// A call the provider billed for a job beyond the one whose answer the
/// job kept: its attempt number and its charge.
#[derive(Clone, Debug, PartialEq)]
pub enum Repeat {
    /// An attempt never answered (its worker died during the call).
    Orphaned {
        attempt: u32,
        provider: Option<String>,
        orphan: Orphan,
    },
    /// A call of attempt `attempt` that its router gave up on after the
    /// request reached the provider (a client-side timeout, a connection or
    /// stream broken midway), and called again: the `call_index`-th such
    /// call of the attempt (from 1), asked on `tier`, charged as an orphan.
    Abandoned {
        attempt: u32,
        call_index: u32,
        provider: String,
        orphan: Orphan,
        tier: Tier,
    },
    /// An attempt answered after another delivery had ended the job: its
    /// usage and cost are what the provider reported.
    Superseded {
        attempt: u32,
        provider: String,
        usage: Usage,
        cost_micros: u64,
        tier: Tier,
    },
}

impl LedgerRow {
    /// The row of a job a worker has just ended with `outcome`: what the
    /// provider reported and charged for it, or, for an answer served from
    /// the cache (or shared by the identical job it joined), no tokens and
    /// no cost of its own but what the source call cost as saved.
    /// `started_at` is when it was started (`None`: it never was, as a job
    /// that joined another), `provider_latency_ms` how long its provider
    /// call took.
    pub fn for_job(
        message: &JobMessage,
        outcome: &Outcome,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
        provider_latency_ms: Option<u64>,
    ) -> Self {
        let (usage, cost_micros, saved_micros, provider) = match outcome {
            Outcome::Succeeded {
                usage,
                cost_micros,
                provider,
                ..
            } => (*usage, cost_micros.unwrap_or(0), 0, Some(provider.clone())),
            // Its tokens were billed once, to the job whose call made it.
            Outcome::Cached { answer, info } => (
                Usage::default(),
                0,
                info.saved_micros,
                Some(answer.provider.clone()),
            ),
            Outcome::Failed(_) | Outcome::Expired => (Usage::default(), 0, 0, None),
        };
        Self {
            job_id: message.id,
            tenant_id: message.tenant_id.clone(),
            key_id: message.key_id.clone(),
            model: message.model.clone(),
            provider,
            endpoint: message.endpoint,
            metadata: message.metadata.clone(),
            status: outcome.status(),
            usage,
            cost_micros,
            saved_micros,
            cache_hit: matches!(outcome, Outcome::Cached { .. }),
            queue_wait_ms: queue_wait(message.enqueued_at, started_at).map(millis),
            provider_latency_ms,
            finished_at,
            attempt: 0,
            call_index: 0,
            estimated_micros: 0,
            estimated_by: None,
            tier: outcome.tier(),
        }
    }

    /// The row of a provider call made for no job (see [`Call`]): it
    /// succeeded at `finished_at`, was never queued and served no cache.
    pub fn for_call(call: Call, finished_at: DateTime<Utc>) -> Self {
        Self {
            job_id: call.id,
            tenant_id: call.tenant_id,
            key_id: call.key_id,
            model: call.model,
            provider: Some(call.provider),
            endpoint: call.endpoint,
            metadata: call.metadata,
            status: JobStatus::Succeeded,
            usage: call.usage,
            cost_micros: call.cost_micros,
            saved_micros: 0,
            cache_hit: false,
            queue_wait_ms: None,
            provider_latency_ms: None,
            finished_at,
            attempt: 0,
            call_index: 0,
            estimated_micros: 0,
            estimated_by: None,
            tier: Some(Tier::Realtime),
        }
    }

    /// The row of a job's repeated call (see [`Repeat`]): charged to the
    /// job's tenant and labels, under the job's final `status`, keyed by
    /// the job, the attempt's number and the call's within it, so that it
    /// is recorded once.
    pub fn for_repeat(
        message: &JobMessage,
        status: JobStatus,
        repeat: Repeat,
        finished_at: DateTime<Utc>,
    ) -> Self {
        let (
            (attempt, call_index),
            provider,
            usage,
            cost_micros,
            estimated_micros,
            estimated_by,
            tier,
        ) = match repeat {
            Repeat::Orphaned {
                attempt,
                provider,
                orphan,
            } => (
                (attempt, 0),
                provider,
                orphan.usage,
                orphan.exact_micros,
                orphan.estimated_micros,
                Some(orphan.estimate),
                // Priced as a standard call: the mark does not say its tier.
                Tier::Realtime,
            ),
            Repeat::Abandoned {
                attempt,
                call_index,
                provider,
                orphan,
                tier,
            } => (
                (attempt, call_index),
                Some(provider),
                orphan.usage,
                orphan.exact_micros,
                orphan.estimated_micros,
                Some(orphan.estimate),
                tier,
            ),
            Repeat::Superseded {
                attempt,
                provider,
                usage,
                cost_micros,
                tier,
            } => (
                (attempt, 0),
                Some(provider),
                usage,
                cost_micros,
                0,
                None,
                tier,
            ),
        };
        Self {
            provider,
            status,
            usage,
            cost_micros,
            attempt,
            call_index,
            estimated_micros,
            estimated_by,
            tier: Some(tier),
            // The job's labels, no wait, no latency, nothing saved.
            ..Self::for_job(message, &Outcome::Expired, None, finished_at, None)
        }
    }

    /// The row of an ended job, from its record (a job that ended before
    /// its delivery was acked, or a cache hit the API answered); `None`
    /// while it runs.
    pub fn from_record(record: &JobRecord, provider_latency_ms: Option<u64>) -> Option<Self> {
        if !record.status.is_terminal() {
            return None;
        }
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
            queue_wait_ms: queue_wait(record.created_at, record.started_at).map(millis),
            provider_latency_ms,
            finished_at: record.finished_at.unwrap_or(record.created_at),
            attempt: 0,
            call_index: 0,
            estimated_micros: 0,
            estimated_by: None,
            tier: record.tier,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheKind, CachedAnswer};
    use crate::JobError;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
    }

    fn message() -> JobMessage {
        let mut m = JobMessage::new(
            JobId::new(),
            "t",
            Endpoint::Completions,
            "m",
            json!({}),
            at(0),
        );
        m.key_id = Some("k".into());
        m
    }

    #[test]
    fn queue_wait_runs_from_enqueueing_to_start_and_a_job_never_started_has_none() {
        assert_eq!(
            queue_wait(at(0), Some(at(1500))),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(queue_wait(at(0), None), None);
        // Another host's clock behind the API's: no negative wait.
        assert_eq!(queue_wait(at(0), Some(at(-20))), Some(Duration::ZERO));
    }

    #[test]
    fn a_job_that_ran_bills_what_the_provider_charged() {
        let outcome = Outcome::Succeeded {
            result: serde_json::json!({}),
            usage: Usage::new(10, 5, 0),
            provider: "p".into(),
            cost_micros: Some(42),
            tier: Tier::Flex,
        };
        let row = LedgerRow::for_job(&message(), &outcome, Some(at(250)), at(900), Some(600));
        assert_eq!(row.tier, Some(Tier::Flex));
        assert_eq!(row.usage, Usage::new(10, 5, 0));
        assert_eq!((row.cost_micros, row.saved_micros), (42, 0));
        assert_eq!(row.provider.as_deref(), Some("p"));
        assert_eq!(row.queue_wait_ms, Some(250));
        assert_eq!(row.provider_latency_ms, Some(600));
        assert!(!row.cache_hit);
        assert_eq!(row.status, JobStatus::Succeeded);
    }

    #[test]
    fn a_shared_answer_costs_nothing_saves_its_source_and_never_waited_in_the_queue() {
        let answer = CachedAnswer {
            job: JobId::new(),
            result: serde_json::json!({}),
            usage: Usage::new(10, 5, 0),
            provider: "p".into(),
            cost_micros: 42,
        };
        let info = answer.info(CacheKind::Inflight, None);
        let outcome = Outcome::Cached { answer, info };
        let row = LedgerRow::for_job(&message(), &outcome, None, at(900), None);
        assert_eq!(row.usage, Usage::default());
        assert_eq!((row.cost_micros, row.saved_micros), (0, 42));
        assert!(row.cache_hit);
        assert_eq!(row.tier, Some(Tier::Cache));
        assert_eq!(row.queue_wait_ms, None);

        let failed = Outcome::Failed(JobError::new("provider_error", "no"));
        let row = LedgerRow::for_job(&message(), &failed, None, at(900), None);
        assert_eq!(
            (row.cost_micros, row.saved_micros, row.cache_hit),
            (0, 0, false)
        );
        assert_eq!((row.status, row.provider), (JobStatus::Failed, None));
    }

    #[test]
    fn a_record_and_its_message_give_the_same_queue_wait() {
        let m = message();
        let mut record = crate::JobRecord::queued(
            m.id,
            m.tenant_id.clone(),
            m.endpoint,
            m.model.clone(),
            m.priority,
            m.metadata.clone(),
            m.enqueued_at,
            None,
        );
        assert_eq!(LedgerRow::from_record(&record, None), None);
        record.status = JobStatus::Failed;
        record.started_at = Some(at(700));
        record.finished_at = Some(at(900));
        let failed = Outcome::Failed(JobError::new("provider_error", "no"));
        let fresh = LedgerRow::for_job(&m, &failed, Some(at(700)), at(900), None);
        let rebuilt = LedgerRow::from_record(&record, None).unwrap();
        assert_eq!(rebuilt.queue_wait_ms, Some(700));
        assert_eq!(rebuilt.queue_wait_ms, fresh.queue_wait_ms);
    }

    #[test]
    fn a_call_for_no_job_is_billed_as_the_provider_billed_it() {
        let call = Call {
            id: JobId::new(),
            tenant_id: "t".into(),
            key_id: Some("k".into()),
            model: "embed".into(),
            provider: "p".into(),
            endpoint: Endpoint::Embeddings,
            metadata: Metadata::new(),
            usage: Usage::new(7, 0, 0),
            cost_micros: 3,
        };
        let row = LedgerRow::for_call(call, at(5));
        assert_eq!((row.status, row.cost_micros), (JobStatus::Succeeded, 3));
        assert_eq!(row.usage.prompt_tokens, 7);
        assert_eq!((row.queue_wait_ms, row.cache_hit), (None, false));
    }
}
