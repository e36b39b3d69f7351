//! The response cache: exact entries, the in-flight map that coalesces
//! identical requests, and the semantic cache's vectors. A trait with a
//! Redis implementation and an in-memory one.
//!
//! In flight: the first of identical requests *claims* the request's key
//! (`pending`), and once the broker confirmed its job it *confirms* the
//! claim (`live`). Later requests *follow* a live leader only: their
//! records are written first and their messages filed on the leader's
//! list, so the leader's worker, which always *closes* the claim when the
//! leader's job ends, finds every follower. Followers of a leader that
//! never ran (canceled, expired) are handed back to be published.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use sluice_core::cache::{CachedAnswer, SemanticSample};
use sluice_core::{JobId, JobMessage};

pub use memory::MemoryCache;
pub use redis::RedisCache;

use crate::StoreError;

/// Where an exact entry lives: the tenant, the model and the request key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub tenant: String,
    pub model: String,
    pub key: String,
}

impl EntryKey {
    /// The key identical requests in flight share, by whether they may
    /// wait (have a deadline): a job that can wait may go out on a slower,
    /// cheaper tier, so a job that cannot never joins one that can, nor
    /// the other way round. The cache entry itself is shared by both.
    pub fn flight(&self, may_wait: bool) -> EntryKey {
        let mut flight = self.clone();
        if may_wait {
            flight.key.push_str(":waits");
        }
        flight
    }
}

/// Where semantic neighbours live: the tenant, the model and the scope
/// (every parameter but the prompt).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SemanticScope {
    pub tenant: String,
    pub model: String,
    pub scope: String,
}

/// What claiming a request key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// No identical request is in flight: this job leads.
    Leader,
    /// An identical job claimed the key and is being enqueued.
    Pending(JobId),
    /// An identical job is queued or running: follow it.
    Live(JobId),
}

/// A semantic neighbour: its prompt's vector and text, and its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub vector: Vec<f32>,
    /// The prompt's text, for the verifier (empty for an entry filed
    /// without one, which the verifier never serves).
    pub text: String,
    pub answer: CachedAnswer,
}

#[async_trait]
pub trait ResponseCache: Send + Sync + 'static {
    async fn get(&self, entry: &EntryKey) -> Result<Option<CachedAnswer>, StoreError>;

    async fn put(
        &self,
        entry: &EntryKey,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Claims `entry` for `job` unless an identical job holds it; a
    /// pending claim lapses after `pending_ttl`.
    async fn claim(
        &self,
        entry: &EntryKey,
        job: JobId,
        pending_ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Marks `job`'s claim live (its publish was confirmed). `false` when
    /// the claim lapsed or is another job's.
    async fn confirm(
        &self,
        entry: &EntryKey,
        job: JobId,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Drops `job`'s pending claim (its publish failed).
    async fn abandon(&self, entry: &EntryKey, job: JobId) -> Result<(), StoreError>;

    /// Files `follower` on `leader`'s list, if `leader`'s claim is still
    /// live; `false` when it is not (the leader ended).
    async fn follow(
        &self,
        entry: &EntryKey,
        leader: JobId,
        follower: &JobMessage,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Ends `leader`'s claim and returns its followers. The list is kept
    /// for a while, so a redelivered leader finds it again.
    async fn close(&self, entry: &EntryKey, leader: JobId) -> Result<Vec<JobMessage>, StoreError>;

    /// Files `job`'s prompt vector and text in its buckets, with no
    /// answer yet.
    async fn file_vector(
        &self,
        scope: &SemanticScope,
        job: JobId,
        vector: &[f32],
        text: &str,
        buckets: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Attaches `job`'s answer to its filed vector (if still there).
    async fn answer_vector(
        &self,
        scope: &SemanticScope,
        job: JobId,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Answered neighbours sharing at least one of `buckets`, at most `max`:
    /// those sharing the most buckets first (the likeliest to be near),
    /// the newest first among equals.
    async fn candidates(
        &self,
        scope: &SemanticScope,
        buckets: &[String],
        max: usize,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// Keeps `sample` among `tenant`'s latest [`SAMPLES_KEPT`] served
    /// semantic hits.
    async fn add_sample(&self, tenant: &str, sample: &SemanticSample) -> Result<(), StoreError>;

    /// `tenant`'s latest served semantic hits, newest first, at most `max`.
    async fn samples(&self, tenant: &str, max: usize) -> Result<Vec<SemanticSample>, StoreError>;

    /// Deletes `tenant`'s entries (exact and semantic), of one model or
    /// all; how many entries went.
    async fn clear(&self, tenant: &str, model: Option<&str>) -> Result<u64, StoreError>;
}

/// Served semantic hits kept per tenant for review: enough to read a
/// day's hits of a small feature, bounded so a busy tenant costs at most a
/// few hundred KiB of Redis.
pub const SAMPLES_KEPT: usize = 200;

/// How long a tenant's samples outlive its last semantic hit.
pub const SAMPLES_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How long a leader's follower list outlives its close, for redeliveries.
pub const FOLLOWERS_KEPT: Duration = Duration::from_secs(3_600);

fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod contract;
