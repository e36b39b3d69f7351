//! What follows a job's end besides its own record. Its answer goes to the
//! cache ([`Followers::remember`], before the job's own end is stored, so
//! that whoever sees the end and asks again finds it: the exact entry, and
//! the answer to the semantic vector the API filed). The identical jobs
//! that joined it while it was in flight end with it
//! ([`Followers::after`]): with its answer (at no cost, saving what it
//! cost) or its failure; if it never ran (canceled, expired), they are
//! published to run on their own. Every step is idempotent, so a
//! redelivered job does it again safely: ends only move forward and the
//! ledger keeps one row per job.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_core::cache::{CacheKind, CachedAnswer};
use sluice_core::job::Outcome;
use sluice_core::ledger::LedgerRow;
use sluice_core::metrics::Metrics;
use sluice_core::{JobError, JobMessage, JobRecord, JobStatus, Usage};
use sluice_queue::{JobQueue, Outgoing};
use sluice_store::cache::{EntryKey, ResponseCache, SemanticScope};
use sluice_store::jobs::JobStore;

use crate::retry::with_store_retry;

/// How a job ended, as the jobs that follow it see it.
pub enum Ended {
    Answered(CachedAnswer),
    Failed(JobError),
    /// Canceled or expired before it ran, or gone.
    NotRun,
}

impl Ended {
    pub fn from_outcome(message: &JobMessage, outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Succeeded {
                result,
                usage,
                provider,
                cost_micros,
            } => Self::Answered(CachedAnswer {
                job: message.id,
                result: result.clone(),
                usage: *usage,
                provider: provider.clone(),
                cost_micros: cost_micros.unwrap_or(0),
            }),
            Outcome::Cached { answer, .. } => Self::Answered(answer.clone()),
            Outcome::Failed(error) => Self::Failed(error.clone()),
            Outcome::Expired => Self::NotRun,
        }
    }

    pub fn from_record(record: Option<&JobRecord>) -> Self {
        let Some(r) = record else {
            return Self::NotRun;
        };
        match (r.status, &r.result) {
            (JobStatus::Succeeded, Some(result)) => Self::Answered(CachedAnswer {
                job: r.id,
                result: result.clone(),
                usage: r.usage.unwrap_or_default(),
                provider: r.provider.clone().unwrap_or_default(),
                cost_micros: r.cost_micros.unwrap_or(0),
            }),
            (JobStatus::Failed, _) => Self::Failed(
                r.error
                    .clone()
                    .unwrap_or_else(|| JobError::new("failed", "the job failed")),
            ),
            _ => Self::NotRun,
        }
    }
}

pub struct Followers {
    pub cache: Arc<dyn ResponseCache>,
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn JobStore>,
    pub metrics: Arc<Metrics>,
}

impl Followers {
    /// Ends `leader`'s followers like it; their ledger rows. An error
    /// means a follower could not be ended or published: the leader must
    /// go back to the queue, and its redelivery tries again.
    pub async fn after(
        &self,
        leader: &JobMessage,
        ended: &Ended,
    ) -> Result<Vec<LedgerRow>, String> {
        let Some(directive) = leader.cache.as_ref().filter(|d| d.leads) else {
            return Ok(Vec::new());
        };
        let entry = entry(leader, &directive.key);
        let followers = with_store_retry("close", || self.cache.close(&entry, leader.id))
            .await
            .map_err(|e| format!("cannot read the jobs that joined {}: {e}", leader.id))?;
        if followers.is_empty() {
            return Ok(Vec::new());
        }
        match ended {
            Ended::NotRun => self.publish(followers).await.map(|()| Vec::new()),
            Ended::Answered(answer) => {
                let info = answer.info(CacheKind::Inflight, None);
                let outcome = Outcome::Cached {
                    answer: answer.clone(),
                    info,
                };
                self.end_all(followers, &outcome, answer.cost_micros).await
            }
            Ended::Failed(error) => {
                self.end_all(followers, &Outcome::Failed(error.clone()), 0)
                    .await
            }
        }
    }

    /// Stores the job's answer, if it has one and may be cached; a cache
    /// that cannot be written only costs a later miss.
    pub async fn remember(&self, job: &JobMessage, ended: &Ended) {
        let (Some(directive), Ended::Answered(answer)) = (&job.cache, ended) else {
            return;
        };
        if !directive.write {
            return;
        }
        let ttl = Duration::from_secs(directive.ttl_s.max(1));
        if let Err(e) = self
            .cache
            .put(&entry(job, &directive.key), answer, ttl)
            .await
        {
            tracing::warn!(job = %job.id, error = %e, "cannot cache an answer");
        }
        if let Some(scope) = &directive.semantic_scope {
            let scope = SemanticScope {
                tenant: job.tenant_id.clone(),
                model: job.model.clone(),
                scope: scope.clone(),
            };
            if let Err(e) = self.cache.answer_vector(&scope, job.id, answer, ttl).await {
                tracing::warn!(job = %job.id, error = %e, "cannot cache an answer's vector");
            }
        }
    }

    async fn publish(&self, followers: Vec<JobMessage>) -> Result<(), String> {
        let n = followers.len();
        let outgoing = followers
            .iter()
            .map(|m| Outgoing {
                priority: m.priority,
                body: m.encode().into(),
                headers: m.headers(),
            })
            .collect();
        for confirm in self.queue.publish(outgoing).await {
            confirm.map_err(|e| {
                format!("cannot publish the {n} jobs that joined a job that did not run: {e}")
            })?;
        }
        tracing::info!(
            jobs = n,
            "published the jobs that joined a job that did not run"
        );
        Ok(())
    }

    async fn end_all(
        &self,
        followers: Vec<JobMessage>,
        outcome: &Outcome,
        saved_micros: u64,
    ) -> Result<Vec<LedgerRow>, String> {
        let now = Utc::now();
        let ended = futures::future::join_all(followers.iter().map(|f| async move {
            match with_store_retry("finish", || self.store.finish(f.id, outcome, now)).await {
                Ok(true) => Ok(Some((row(f, outcome, saved_micros, now), true))),
                // Ended before (canceled, or a redelivery ended it): the
                // row its record shows, if any.
                Ok(false) => with_store_retry("read", || self.store.get(f.id))
                    .await
                    .map(|r| {
                        r.as_ref()
                            .and_then(|r| LedgerRow::from_record(r, None))
                            .map(|row| (row, false))
                    }),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut rows = Vec::with_capacity(ended.len());
        let mut fresh = 0u64;
        for result in ended {
            match result {
                Ok(Some((row, now_ended))) => {
                    fresh += u64::from(now_ended);
                    rows.push(row);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot end a job that joined another: {e}")),
            }
        }
        self.metrics
            .jobs_finished
            .with_label_values(&[outcome.status().as_str()])
            .inc_by(fresh);
        if let Outcome::Cached { .. } = outcome {
            self.metrics.cache_saved_micros.inc_by(saved_micros * fresh);
        }
        Ok(rows)
    }
}

fn entry(job: &JobMessage, key: &str) -> EntryKey {
    EntryKey {
        tenant: job.tenant_id.clone(),
        model: job.model.clone(),
        key: key.to_owned(),
    }
}

/// The ledger row of a follower ended now: no tokens and no cost of its
/// own; a served answer saved what the leader's call cost.
fn row(f: &JobMessage, outcome: &Outcome, saved_micros: u64, now: DateTime<Utc>) -> LedgerRow {
    let (provider, saved, hit) = match outcome {
        Outcome::Cached { answer, .. } => (Some(answer.provider.clone()), saved_micros, true),
        _ => (None, 0, false),
    };
    LedgerRow {
        job_id: f.id,
        tenant_id: f.tenant_id.clone(),
        key_id: f.key_id.clone(),
        model: f.model.clone(),
        provider,
        endpoint: f.endpoint,
        metadata: f.metadata.clone(),
        status: outcome.status(),
        usage: Usage::default(),
        cost_micros: 0,
        saved_micros: saved,
        cache_hit: hit,
        queue_wait_ms: u64::try_from((now - f.enqueued_at).num_milliseconds()).ok(),
        provider_latency_ms: None,
        finished_at: now,
    }
}
