//! The response cache in Redis, through fred.
//!
//! Keys, under the prefix `P`, with `T` the tenant and `M` the model's tag
//! ([`sluice_core::cache::canonical::model_tag`]):
//! - `P:cache:T:M:K`: an exact entry (the answer as JSON), with its TTL;
//! - `P:fly:{T:K}`: the in-flight pointer of request key `K`
//!   (`pending:ID` or `live:ID`), and `P:fly:{T:K}:f:ID`, the followers of
//!   leader `ID` (their messages). One hash tag, one slot, one script.
//! - `P:sem:T:M:{S}:b:BUCKET`: a set of job ids whose prompt vectors fall
//!   in that bucket of scope `S`; `P:sem:T:M:{S}:e:ID`: the vector (`vec`,
//!   f32 little-endian), the prompt's `text` and, once answered, the `answer`. A scope is one
//!   hash tag, so a lookup is one script on one slot, and scopes spread
//!   over a cluster.
//! - `P:semsamples:T`: the tenant's latest served semantic hits (JSON,
//!   newest first, trimmed to [`SAMPLES_KEPT`]).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use sluice_core::cache::canonical::model_tag;
use sluice_core::cache::{CachedAnswer, SemanticSample};
use sluice_core::{JobId, JobMessage};

use super::{
    decode_vector, encode_vector, Candidate, Claim, EntryKey, ResponseCache, SemanticScope,
    FOLLOWERS_KEPT, SAMPLES_KEPT, SAMPLES_TTL,
};
use crate::StoreError;

pub struct RedisCache {
    pool: Pool,
    prefix: String,
    claim: Script,
    confirm: Script,
    abandon: Script,
    follow: Script,
    close: Script,
    answer_vector: Script,
    candidates: Script,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// A cached answer as JSON text; an error, never an empty entry.
fn json(value: &CachedAnswer) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::unencodable("a cached answer", &e))
}

fn answer(text: &str) -> Result<CachedAnswer, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("cache entry: {e}")))
}

impl RedisCache {
    pub(crate) fn new(pool: Pool, prefix: String) -> Self {
        Self {
            pool,
            prefix,
            claim: Script::from_lua(include_str!("lua/claim.lua")),
            confirm: Script::from_lua(include_str!("lua/confirm.lua")),
            abandon: Script::from_lua(include_str!("lua/abandon.lua")),
            follow: Script::from_lua(include_str!("lua/follow.lua")),
            close: Script::from_lua(include_str!("lua/close.lua")),
            answer_vector: Script::from_lua(include_str!("lua/answer_vector.lua")),
            candidates: Script::from_lua(include_str!("lua/candidates.lua")),
        }
    }

    fn entry(&self, e: &EntryKey) -> String {
        format!(
            "{}:cache:{}:{}:{}",
            self.prefix,
            e.tenant,
            model_tag(&e.model),
            e.key
        )
    }

    fn pointer(&self, e: &EntryKey) -> String {
        format!("{}:fly:{{{}:{}}}", self.prefix, e.tenant, e.key)
    }

    fn followers(&self, e: &EntryKey, leader: JobId) -> String {
        format!("{}:f:{leader}", self.pointer(e))
    }

    fn scope(&self, s: &SemanticScope) -> String {
        format!(
            "{}:sem:{}:{}:{{{}}}",
            self.prefix,
            s.tenant,
            model_tag(&s.model),
            s.scope
        )
    }

    fn bucket(&self, s: &SemanticScope, bucket: &str) -> String {
        format!("{}:b:{bucket}", self.scope(s))
    }

    fn samples_key(&self, tenant: &str) -> String {
        format!("{}:semsamples:{tenant}", self.prefix)
    }

    fn vector_entry_prefix(&self, s: &SemanticScope) -> String {
        format!("{}:e:", self.scope(s))
    }

    /// Deletes every key matching `pattern`; how many went.
    async fn delete_matching(&self, pattern: String) -> Result<u64, StoreError> {
        use fred::types::scan::Scanner;
        use futures::StreamExt;
        let client = self.pool.next();
        let mut scan = client.scan(pattern, Some(500), None);
        let mut deleted = 0;
        while let Some(page) = scan.next().await {
            let mut page = page?;
            if let Some(keys) = page.take_results() {
                if !keys.is_empty() {
                    deleted += client.unlink::<u64, _>(keys).await?;
                }
            }
            page.next();
        }
        Ok(deleted)
    }
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, entry: &EntryKey) -> Result<Option<CachedAnswer>, StoreError> {
        let text: Option<String> = self.pool.get(self.entry(entry)).await?;
        text.as_deref().map(answer).transpose()
    }

    async fn put(
        &self,
        entry: &EntryKey,
        value: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let () = self
            .pool
            .set(
                self.entry(entry),
                json(value)?,
                Some(Expiration::EX(secs(ttl))),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    async fn claim(
        &self,
        entry: &EntryKey,
        job: JobId,
        pending_ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let ms = u64::try_from(pending_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let held: String = self
            .claim
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer(entry)],
                vec![job.to_string(), ms.to_string()],
            )
            .await?;
        let parse = |id: &str| {
            id.parse::<JobId>()
                .map_err(|_| StoreError::Corrupt(format!("in-flight pointer {held:?}")))
        };
        match held.split_once(':') {
            None if held == "leader" => Ok(Claim::Leader),
            Some(("pending", id)) => Ok(Claim::Pending(parse(id)?)),
            Some(("live", id)) => Ok(Claim::Live(parse(id)?)),
            _ => Err(StoreError::Corrupt(format!("in-flight pointer {held:?}"))),
        }
    }

    async fn confirm(
        &self,
        entry: &EntryKey,
        job: JobId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .confirm
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer(entry)],
                vec![job.to_string(), secs(ttl).to_string()],
            )
            .await?;
        Ok(done == 1)
    }

    async fn abandon(&self, entry: &EntryKey, job: JobId) -> Result<(), StoreError> {
        let _: i64 = self
            .abandon
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer(entry)],
                vec![job.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn follow(
        &self,
        entry: &EntryKey,
        leader: JobId,
        follower: &JobMessage,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let follower = follower
            .encode()
            .map_err(|e| StoreError::unencodable("a joined job's message", &e))?;
        let filed: i64 = self
            .follow
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer(entry), self.followers(entry, leader)],
                vec![
                    leader.to_string(),
                    String::from_utf8_lossy(&follower).into_owned(),
                    secs(ttl).to_string(),
                ],
            )
            .await?;
        Ok(filed == 1)
    }

    async fn close(&self, entry: &EntryKey, leader: JobId) -> Result<Vec<JobMessage>, StoreError> {
        let messages: Vec<String> = self
            .close
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.pointer(entry), self.followers(entry, leader)],
                vec![leader.to_string(), secs(FOLLOWERS_KEPT).to_string()],
            )
            .await?;
        messages
            .iter()
            .map(|m| {
                JobMessage::decode(m.as_bytes())
                    .map_err(|e| StoreError::Corrupt(format!("follower message: {e}")))
            })
            .collect()
    }

    async fn file_vector(
        &self,
        scope: &SemanticScope,
        job: JobId,
        vector: &[f32],
        text: &str,
        buckets: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let ttl = secs(ttl);
        let entry = format!("{}{job}", self.vector_entry_prefix(scope));
        let pipeline = self.pool.next().pipeline();
        let () = pipeline
            .hset(
                &entry,
                [
                    ("vec", Value::Bytes(encode_vector(vector).into())),
                    ("text", Value::from(text)),
                ],
            )
            .await?;
        let () = pipeline.expire(&entry, ttl, None).await?;
        for bucket in buckets {
            let key = self.bucket(scope, bucket);
            let () = pipeline.sadd(&key, job.to_string()).await?;
            let () = pipeline.expire(&key, ttl, None).await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
        Ok(())
    }

    async fn answer_vector(
        &self,
        scope: &SemanticScope,
        job: JobId,
        value: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let entry = format!("{}{job}", self.vector_entry_prefix(scope));
        let _: i64 = self
            .answer_vector
            .evalsha_with_reload(
                self.pool.next(),
                vec![entry],
                vec![json(value)?, secs(ttl).to_string()],
            )
            .await?;
        Ok(())
    }

    async fn candidates(
        &self,
        scope: &SemanticScope,
        buckets: &[String],
        max: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = buckets.iter().map(|b| self.bucket(scope, b)).collect();
        let reply: Vec<Value> = self
            .candidates
            .evalsha_with_reload(
                self.pool.next(),
                keys,
                vec![self.vector_entry_prefix(scope), max.max(1).to_string()],
            )
            .await?;
        let utf8 = |v: &Value| {
            v.as_bytes()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        reply
            .chunks_exact(3)
            .map(|triple| {
                let vector = decode_vector(triple[0].as_bytes().unwrap_or_default());
                Ok(Candidate {
                    vector,
                    answer: answer(&utf8(&triple[1]))?,
                    text: utf8(&triple[2]),
                })
            })
            .collect()
    }

    async fn add_sample(&self, tenant: &str, sample: &SemanticSample) -> Result<(), StoreError> {
        let key = self.samples_key(tenant);
        let text = serde_json::to_string(sample)
            .map_err(|e| StoreError::unencodable("a semantic sample", &e))?;
        let pipeline = self.pool.next().pipeline();
        let () = pipeline.lpush(&key, text).await?;
        let () = pipeline.ltrim(&key, 0, SAMPLES_KEPT as i64 - 1).await?;
        let () = pipeline.expire(&key, secs(SAMPLES_TTL), None).await?;
        let _: Vec<Value> = pipeline.all().await?;
        Ok(())
    }

    async fn samples(&self, tenant: &str, max: usize) -> Result<Vec<SemanticSample>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = self
            .pool
            .next()
            .lrange(self.samples_key(tenant), 0, max as i64 - 1)
            .await?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| StoreError::Corrupt(format!("semantic sample: {e}")))
            })
            .collect()
    }

    async fn clear(&self, tenant: &str, model: Option<&str>) -> Result<u64, StoreError> {
        let scope = match model {
            Some(m) => format!("{tenant}:{}", model_tag(m)),
            None => tenant.to_owned(),
        };
        let exact = self
            .delete_matching(format!("{}:cache:{scope}:*", self.prefix))
            .await?;
        let entries = self
            .delete_matching(format!("{}:sem:{scope}:*:e:*", self.prefix))
            .await?;
        self.delete_matching(format!("{}:sem:{scope}:*:b:*", self.prefix))
            .await?;
        Ok(exact + entries)
    }
}
