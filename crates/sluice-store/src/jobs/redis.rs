//! Job records in Redis, through fred.
//!
//! Keys, all under the configured prefix `P`:
//! - `P:job:{ID}`: the record, a hash (see `codec`), with the retention TTL
//!   (plus the time to the job's deadline, `JobRecord::kept_for`).
//!   The id is the key's hash tag, so a script touching a job touches one slot.
//! - `P:done`: the completion channel; the jobs that end together publish
//!   their ids in one message, separated by spaces.
//! - `P:chunks:{ID}`: a streaming job's chunk log, a Redis stream, kept for
//!   `CHUNK_LOG_TTL` after its last append; `P:chunks` (the channel) names
//!   the jobs whose logs grew, as `P:done` does.
//!
//! State changes are Lua scripts (`lua/`): compare-and-set, so a job's
//! status only moves forward, and each end publishes in the same atomic step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::Server;
use fred::types::scan::Scanner;
use fred::types::scripts::Script;
use fred::types::Message;
use futures::StreamExt;
use sluice_core::job::{CancelOutcome, Outcome, StartOutcome};
use sluice_core::stream::StreamEntry;
use sluice_core::{JobError, JobId, JobRecord, JobStatus, Tier};
use tokio_util::sync::CancellationToken;

use super::codec::{self, rfc3339};
use super::scripts::{check_len, parse_start, push_fields, script_groups};
use super::waiters::{WaiterHub, Watch};
use super::{ChunkPosition, JobStore};
use crate::StoreError;

/// How long one Redis command may take before it fails: a store that does
/// not answer is an error the caller sees, not a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The stored error of a job found past its deadline at start, encoded
/// once rather than for every start (a failure kept as its text).
static DEADLINE_ERROR: std::sync::LazyLock<Result<String, String>> =
    std::sync::LazyLock::new(|| {
        codec::encode_error(&JobError::deadline_passed()).map_err(|e| e.to_string())
    });

#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
    /// How long a job record is kept after it is created.
    pub retention: Duration,
    pub pool_size: usize,
}

pub struct RedisJobStore {
    pool: Pool,
    builder: Builder,
    prefix: String,
    retention: Duration,
    hub: Arc<WaiterHub>,
    /// Whether Redis is a cluster: a script's keys must then share a slot.
    clustered: bool,
    create: Script,
    start: Script,
    finish: Script,
    sent: Script,
    waiting: Script,
    cancel: Script,
    release_idem: Script,
    chunks: Script,
}

impl RedisJobStore {
    /// Connects; fails at once if Redis does not answer.
    pub async fn connect(opts: RedisOptions) -> Result<Self, StoreError> {
        let config = Config::from_url(&opts.url)?;
        let clustered = config.server.is_clustered();
        let mut builder = Builder::from_config(config);
        builder
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                p.broadcast_channel_capacity = 4096;
            })
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let pool = builder.build_pool(opts.pool_size.max(1))?;
        pool.init().await?;
        Ok(Self {
            pool,
            builder,
            prefix: opts.prefix,
            retention: opts.retention,
            hub: WaiterHub::new(),
            clustered,
            create: Script::from_lua(include_str!("lua/create.lua")),
            start: Script::from_lua(include_str!("lua/start.lua")),
            finish: Script::from_lua(include_str!("lua/finish.lua")),
            sent: Script::from_lua(include_str!("lua/sent.lua")),
            waiting: Script::from_lua(include_str!("lua/waiting.lua")),
            cancel: Script::from_lua(include_str!("lua/cancel.lua")),
            release_idem: Script::from_lua(include_str!("lua/release_idem.lua")),
            chunks: Script::from_lua(include_str!("lua/chunks.lua")),
        })
    }

    fn key(&self, id: JobId) -> String {
        format!("{}:job:{{{id}}}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:done", self.prefix)
    }

    fn chunk_key(&self, id: JobId) -> String {
        format!("{}:chunks:{{{id}}}", self.prefix)
    }

    fn chunk_channel(&self) -> String {
        format!("{}:chunks", self.prefix)
    }

    /// The positions of `keys` in the groups one script call takes.
    fn groups(&self, keys: &[String]) -> Vec<Vec<usize>> {
        script_groups(keys, self.clustered)
    }

    /// Subscribes to the completion channel and the chunk channel: one
    /// subscription for the whole process, confirmed when this returns.
    /// Run the listener to feed this store's watchers.
    pub async fn subscribe(&self) -> Result<CompletionListener, StoreError> {
        let subscriber = self.builder.build_subscriber_client()?;
        subscriber.init().await?;
        let messages = subscriber.message_rx();
        let reconnects = subscriber.reconnect_rx();
        let resubscriber = subscriber.manage_subscriptions();
        subscriber
            .subscribe(vec![self.channel(), self.chunk_channel()])
            .await?;
        Ok(CompletionListener {
            subscriber,
            messages,
            reconnects,
            resubscriber,
            hub: Arc::clone(&self.hub),
        })
    }

    /// Deletes every key under this store's prefix (tests, teardown).
    pub async fn delete_all(&self) -> Result<u64, StoreError> {
        let client = self.pool.next();
        let mut scan = client.scan(format!("{}:*", self.prefix), Some(500), None);
        let mut deleted = 0;
        while let Some(page) = scan.next().await {
            let mut page = page?;
            if let Some(keys) = page.take_results() {
                if !keys.is_empty() {
                    deleted += client.del::<u64, _>(keys).await?;
                }
            }
            page.next();
        }
        Ok(deleted)
    }

    /// The fleet-wide provider budget, on this store's connections.
    pub fn budget(&self) -> crate::budget::RedisBudget {
        crate::budget::RedisBudget::new(self.pool.clone(), self.prefix.clone())
    }

    /// Fair share's counters and keys' slots, on this store's connections.
    pub fn fair(&self) -> crate::fair::RedisFairStore {
        crate::fair::RedisFairStore::new(self.pool.clone(), self.prefix.clone())
    }

    /// The response cache, on this store's connections.
    pub fn cache(&self) -> crate::cache::RedisCache {
        crate::cache::RedisCache::new(self.pool.clone(), self.prefix.clone())
    }

    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }
}

/// The process's completion subscription; see [`RedisJobStore::subscribe`].
pub struct CompletionListener {
    subscriber: SubscriberClient,
    messages: tokio::sync::broadcast::Receiver<Message>,
    reconnects: tokio::sync::broadcast::Receiver<Server>,
    resubscriber: tokio::task::JoinHandle<()>,
    hub: Arc<WaiterHub>,
}

impl CompletionListener {
    /// Wakes the watchers of each job that ends, until `stop`. After a
    /// reconnect (when a message may have been missed) every watcher
    /// reads its job again.
    pub async fn run(mut self, stop: CancellationToken) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                message = self.messages.recv() => match message {
                    Ok(message) => {
                        for id in message.value.as_str().iter().flat_map(|s| s.split(' ')) {
                            if let Ok(id) = id.parse() {
                                self.hub.notify(id);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.hub.notify_all(),
                    Err(RecvError::Closed) => break,
                },
                _ = self.reconnects.recv() => self.hub.notify_all(),
            }
        }
        self.resubscriber.abort();
        let _ = self.subscriber.quit().await;
    }
}

#[async_trait]
impl JobStore for RedisJobStore {
    async fn create(&self, jobs: &[JobRecord]) -> Result<(), StoreError> {
        let keys: Vec<String> = jobs.iter().map(|job| self.key(job.id)).collect();
        let mut calls = Vec::new();
        for group in self.groups(&keys) {
            let mut args = Vec::new();
            for &i in &group {
                args.push(jobs[i].kept_for(self.retention).as_secs().to_string());
                push_fields(&mut args, codec::encode_new(&jobs[i])?);
            }
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            calls.push(async move {
                let _: i64 = self
                    .create
                    .evalsha_with_reload(self.pool.next(), keys, args)
                    .await?;
                Ok::<_, StoreError>(())
            });
        }
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let fields: HashMap<String, String> = self.pool.hgetall(self.key(id)).await?;
        codec::decode(&fields)
    }

    async fn statuses(&self, ids: &[JobId]) -> Result<Vec<Option<JobStatus>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.pool.next().pipeline();
        for &id in ids {
            let () = pipeline.hget(self.key(id), "status").await?;
        }
        let statuses: Vec<Option<String>> = pipeline.all().await?;
        statuses
            .into_iter()
            .map(|s| {
                s.map(|s| s.parse().map_err(StoreError::Corrupt))
                    .transpose()
            })
            .collect()
    }

    async fn start_many(
        &self,
        ids: &[JobId],
        now: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|&id| self.key(id)).collect();
        let groups = self.groups(&keys);
        let (now_ms, now) = (now.timestamp_millis().to_string(), rfc3339(now));
        let channel = self.channel();
        let deadline_error = DEADLINE_ERROR.clone().map_err(StoreError::Unencodable)?;
        let calls = groups.iter().map(|group| {
            let mut args = vec![
                now_ms.clone(),
                now.clone(),
                deadline_error.clone(),
                channel.clone(),
            ];
            args.extend(group.iter().map(|&i| ids[i].to_string()));
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            self.start
                .evalsha_with_reload::<Vec<String>, _, _>(self.pool.next(), keys, args)
        });
        let replies = futures::future::try_join_all(calls).await?;
        let mut outcomes = vec![StartOutcome::Missing; ids.len()];
        for (group, reply) in groups.iter().zip(replies) {
            check_len("start", group.len(), reply.len())?;
            for (&i, answer) in group.iter().zip(reply) {
                outcomes[i] = parse_start(&answer)?;
            }
        }
        Ok(outcomes)
    }

    async fn finish_many(
        &self,
        ends: &[(JobId, &Outcome)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<String> = ends.iter().map(|&(id, _)| self.key(id)).collect();
        let groups = self.groups(&keys);
        let (now, channel) = (rfc3339(now), self.channel());
        let mut calls = Vec::with_capacity(groups.len());
        for group in &groups {
            let mut args = vec![now.clone(), channel.clone()];
            for &i in group {
                let (id, outcome) = ends[i];
                args.push(id.to_string());
                args.push(outcome.status().as_str().to_owned());
                push_fields(&mut args, codec::encode_outcome(outcome)?);
            }
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            calls.push(self.finish.evalsha_with_reload::<Vec<i64>, _, _>(
                self.pool.next(),
                keys,
                args,
            ));
        }
        let replies = futures::future::try_join_all(calls).await?;
        let mut ended = vec![false; ends.len()];
        for (group, reply) in groups.iter().zip(replies) {
            check_len("finish", group.len(), reply.len())?;
            for (&i, applied) in group.iter().zip(reply) {
                ended[i] = applied == 1;
            }
        }
        Ok(ended)
    }

    async fn mark_sent(&self, ids: &[JobId]) -> Result<(), StoreError> {
        let keys: Vec<String> = ids.iter().map(|&id| self.key(id)).collect();
        let calls = self.groups(&keys).into_iter().map(|group| {
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            self.sent
                .evalsha_with_reload::<i64, _, Vec<String>>(self.pool.next(), keys, Vec::new())
        });
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    async fn mark_waiting(&self, ids: &[JobId], tier: Option<Tier>) -> Result<(), StoreError> {
        let keys: Vec<String> = ids.iter().map(|&id| self.key(id)).collect();
        let tier = tier.map_or("", Tier::as_str).to_owned();
        let calls = self.groups(&keys).into_iter().map(|group| {
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            self.waiting.evalsha_with_reload::<i64, _, Vec<String>>(
                self.pool.next(),
                keys,
                vec![tier.clone()],
            )
        });
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let args = vec![rfc3339(now), self.channel(), id.to_string()];
        let reply: String = self
            .cancel
            .evalsha_with_reload(self.pool.next(), vec![self.key(id)], args)
            .await?;
        Ok(match reply.as_str() {
            "ok" => CancelOutcome::Canceled,
            "missing" => CancelOutcome::NotFound,
            other => CancelOutcome::NotCancelable(
                other.parse::<JobStatus>().map_err(StoreError::Corrupt)?,
            ),
        })
    }

    fn watch(&self, id: JobId) -> Watch {
        self.hub.watch(id)
    }

    async fn append_chunks(&self, logs: &[(JobId, Vec<StreamEntry>)]) -> Result<(), StoreError> {
        let keys: Vec<String> = logs.iter().map(|(id, _)| self.chunk_key(*id)).collect();
        let ttl = super::CHUNK_LOG_TTL.as_millis().to_string();
        let calls = self.groups(&keys).into_iter().map(|group| {
            let mut args = vec![ttl.clone(), self.chunk_channel()];
            for &i in &group {
                let (id, entries) = &logs[i];
                args.push(id.to_string());
                args.push(entries.len().to_string());
                for entry in entries {
                    let (field, value) = entry.field();
                    args.push(field.to_owned());
                    args.push(value.to_owned());
                }
            }
            let keys: Vec<String> = group.iter().map(|&i| keys[i].clone()).collect();
            self.chunks
                .evalsha_with_reload::<i64, _, Vec<String>>(self.pool.next(), keys, args)
        });
        futures::future::try_join_all(calls).await?;
        Ok(())
    }

    async fn read_chunks(
        &self,
        id: JobId,
        after: Option<&ChunkPosition>,
        limit: usize,
    ) -> Result<Vec<(ChunkPosition, StreamEntry)>, StoreError> {
        let start = match after {
            Some(position) => format!("({}", position.0),
            None => "-".to_owned(),
        };
        let reply: Value = self
            .pool
            .next()
            .xrange(self.chunk_key(id), start, "+", Some(limit as u64))
            .await?;
        parse_chunks(reply)
    }

    async fn claim_idempotency(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        job: JobId,
        ttl: Duration,
    ) -> Result<super::IdempotencyClaim, StoreError> {
        let name = format!("{}:idem:{{{tenant}}}:{key}", self.prefix);
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .pool
            .set(
                &name,
                super::encode_claim(job, fingerprint),
                Some(Expiration::EX(ttl)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        if set.is_some() {
            return Ok(super::IdempotencyClaim::Claimed);
        }
        let held: Option<String> = self.pool.get(&name).await?;
        match held {
            Some(value) => super::decode_claim(&value),
            // It expired between the two commands: try once more.
            None => Ok(super::IdempotencyClaim::Claimed),
        }
    }

    async fn release_idempotency(
        &self,
        tenant: &str,
        key: &str,
        job: JobId,
    ) -> Result<(), StoreError> {
        let name = format!("{}:idem:{{{tenant}}}:{key}", self.prefix);
        let _: i64 = self
            .release_idem
            .evalsha_with_reload(self.pool.next(), vec![name], vec![job.to_string()])
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let () = self.pool.next().ping(None).await?;
        Ok(())
    }
}

/// An `XRANGE` reply as chunk-log entries: `[[id, [field, value]], …]`.
fn parse_chunks(reply: Value) -> Result<Vec<(ChunkPosition, StreamEntry)>, StoreError> {
    let corrupt = || StoreError::Corrupt("a chunk log entry is not [id, [field, value]]".into());
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(corrupt());
        };
        let mut parts = parts.into_iter();
        let (Some(id), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
            return Err(corrupt());
        };
        let id = id.into_string().ok_or_else(corrupt)?;
        let mut fields = fields.into_iter();
        let (Some(field), Some(value)) = (fields.next(), fields.next()) else {
            return Err(corrupt());
        };
        let field = field.into_string().ok_or_else(corrupt)?;
        let value = value.into_string().ok_or_else(corrupt)?;
        if let Some(entry) = StreamEntry::from_field(&field, value) {
            out.push((ChunkPosition(id), entry));
        }
    }
    Ok(out)
}
