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

use chrono::Utc;
use sluice_core::cache::{CacheKind, CachedAnswer};
use sluice_core::job::Outcome;
use sluice_core::ledger::LedgerRow;
use sluice_core::metrics::Metrics;
use sluice_core::{JobError, JobId, JobMessage, JobRecord, JobStatus};
use sluice_queue::{JobQueue, QueueError};
use sluice_store::cache::{EntryKey, ResponseCache, SemanticScope};
use sluice_store::jobs::JobStore;
use sluice_store::StoreError;

use crate::retry::with_store_retry;

/// How a job ended, as the jobs that follow it see it.
pub enum Ended {
    Answered(CachedAnswer),
    Failed(JobError),
    /// Canceled or expired before it ran, or gone.
    NotRun,
}

impl Ended {
    /// What a job's end passes on to the cache and to the jobs that joined
    /// it. A job without a cache directive has neither, so nothing of its
    /// answer is copied (`NotRun`: nothing to pass on).
    pub fn from_outcome(message: &JobMessage, outcome: &Outcome) -> Self {
        if message.cache.is_none() {
            return Self::NotRun;
        }
        match outcome {
            Outcome::Succeeded {
                result,
                usage,
                provider,
                cost_micros,
                ..
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

/// Why a leader's followers could not all be ended or published: the
/// leader goes back to the queue, and its redelivery tries again.
#[derive(Debug, thiserror::Error)]
pub enum FollowersError {
    #[error("cannot read the jobs that joined {leader}: {source}")]
    Read { leader: JobId, source: StoreError },
    #[error("cannot publish the {jobs} jobs that joined a job that did not run: {source}")]
    Publish { jobs: usize, source: QueueError },
    #[error("cannot end the jobs that joined another: {0}")]
    End(#[source] StoreError),
}

/// What ending a leader's followers left to do before the leader's ack.
#[derive(Default)]
pub struct FollowersEnded {
    /// Their ledger rows.
    pub rows: Vec<LedgerRow>,
    /// Their records, for those with a webhook to announce the end to.
    pub announce: Vec<JobRecord>,
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
    ) -> Result<FollowersEnded, FollowersError> {
        let Some(directive) = leader.cache.as_ref().filter(|d| d.leads) else {
            return Ok(FollowersEnded::default());
        };
        let entry = entry(leader, &directive.key).flight(leader.may_wait());
        let followers = with_store_retry("close", || self.cache.close(&entry, leader.id))
            .await
            .map_err(|source| FollowersError::Read {
                leader: leader.id,
                source,
            })?;
        if followers.is_empty() {
            return Ok(FollowersEnded::default());
        }
        match ended {
            Ended::NotRun => self
                .publish(followers)
                .await
                .map(|()| FollowersEnded::default()),
            Ended::Answered(answer) => {
                let info = answer.info(CacheKind::Inflight, None);
                let outcome = Outcome::Cached {
                    answer: answer.clone(),
                    info,
                };
                self.end_all(followers, &outcome).await
            }
            Ended::Failed(error) => {
                self.end_all(followers, &Outcome::Failed(error.clone()))
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

    async fn publish(&self, followers: Vec<JobMessage>) -> Result<(), FollowersError> {
        let n = followers.len();
        sluice_queue::publish_jobs(self.queue.as_ref(), &followers)
            .await
            .map_err(|source| FollowersError::Publish { jobs: n, source })?;
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
    ) -> Result<FollowersEnded, FollowersError> {
        let now = Utc::now();
        let ends: Vec<_> = followers.iter().map(|f| (f.id, outcome)).collect();
        let finished = with_store_retry("finish", || self.store.finish_many(&ends, now)).await;
        let applied = crate::answers::answered_each("finish", ends.len(), finished)
            .map_err(FollowersError::End)?;
        let ended =
            futures::future::join_all(followers.iter().zip(applied).map(|(f, fresh)| async move {
                // A job ended before (canceled, or by an earlier delivery of
                // its leader) keeps the row its record shows. A job with a
                // webhook is read back, to announce its end as GET shows it.
                let record = if !fresh || f.webhook.is_some() {
                    with_store_retry("read", || self.store.get(f.id)).await?
                } else {
                    None
                };
                // A follower never started: it waited for its leader, not in
                // the queue.
                let row = if fresh {
                    Some(LedgerRow::for_job(f, outcome, None, now, None))
                } else {
                    record
                        .as_ref()
                        .and_then(|r| LedgerRow::from_record(r, None))
                };
                let announce = record.filter(|r| r.webhook.is_some() && r.status.is_terminal());
                Ok::<_, StoreError>((row, announce, fresh))
            }))
            .await;
        let mut done = FollowersEnded::default();
        let mut fresh = 0u64;
        for result in ended {
            let (row, announce, now_ended) = result.map_err(FollowersError::End)?;
            fresh += u64::from(now_ended);
            done.rows.extend(row);
            done.announce.extend(announce);
        }
        self.metrics
            .jobs_finished
            .with_label_values(&[outcome.status().as_str()])
            .inc_by(fresh);
        if let Some(tier) = outcome.tier() {
            self.metrics.answered(tier, fresh);
        }
        if let Outcome::Cached { info, .. } = outcome {
            self.metrics
                .cache_saved_micros
                .inc_by(info.saved_micros * fresh);
        }
        Ok(done)
    }
}

fn entry(job: &JobMessage, key: &str) -> EntryKey {
    EntryKey {
        tenant: job.tenant_id.clone(),
        model: job.model.clone(),
        key: key.to_owned(),
    }
}
