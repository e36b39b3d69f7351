//! The response cache in memory, for unit tests and `sluice dev`. Same
//! semantics as the Redis one, in one process.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice_core::cache::{CachedAnswer, SemanticSample};
use sluice_core::{JobId, JobMessage};

use super::{Candidate, Claim, EntryKey, ResponseCache, SemanticScope, SAMPLES_KEPT};
use crate::StoreError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pointer {
    Pending(JobId),
    Live(JobId),
}

struct Vector {
    vector: Vec<f32>,
    text: String,
    answer: Option<CachedAnswer>,
    until: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<EntryKey, (CachedAnswer, Instant)>,
    pointers: HashMap<(String, String), (Pointer, Instant)>,
    followers: HashMap<(String, String, JobId), Vec<JobMessage>>,
    vectors: HashMap<(SemanticScope, JobId), Vector>,
    buckets: HashMap<(SemanticScope, String), HashSet<JobId>>,
    samples: HashMap<String, std::collections::VecDeque<SemanticSample>>,
}

#[derive(Default)]
pub struct MemoryCache {
    inner: Mutex<Inner>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn pointer_key(e: &EntryKey) -> (String, String) {
    (e.tenant.clone(), e.key.clone())
}

impl Inner {
    fn pointer(&mut self, e: &EntryKey) -> Option<Pointer> {
        let key = pointer_key(e);
        match self.pointers.get(&key) {
            Some((p, until)) if *until > Instant::now() => Some(*p),
            Some(_) => {
                self.pointers.remove(&key);
                None
            }
            None => None,
        }
    }
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, entry: &EntryKey) -> Result<Option<CachedAnswer>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .entries
            .get(entry)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(a, _)| a.clone()))
    }

    async fn put(
        &self,
        entry: &EntryKey,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.entries.retain(|_, (_, until)| *until > now);
        inner
            .entries
            .insert(entry.clone(), (answer.clone(), now + ttl));
        Ok(())
    }

    async fn claim(
        &self,
        entry: &EntryKey,
        job: JobId,
        pending_ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        Ok(match inner.pointer(entry) {
            Some(Pointer::Pending(id)) => Claim::Pending(id),
            Some(Pointer::Live(id)) => Claim::Live(id),
            None => {
                inner.pointers.insert(
                    pointer_key(entry),
                    (Pointer::Pending(job), Instant::now() + pending_ttl),
                );
                Claim::Leader
            }
        })
    }

    async fn confirm(
        &self,
        entry: &EntryKey,
        job: JobId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.pointer(entry) != Some(Pointer::Pending(job)) {
            return Ok(false);
        }
        inner.pointers.insert(
            pointer_key(entry),
            (Pointer::Live(job), Instant::now() + ttl),
        );
        Ok(true)
    }

    async fn abandon(&self, entry: &EntryKey, job: JobId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.pointer(entry) == Some(Pointer::Pending(job)) {
            inner.pointers.remove(&pointer_key(entry));
        }
        Ok(())
    }

    async fn follow(
        &self,
        entry: &EntryKey,
        leader: JobId,
        follower: &JobMessage,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.pointer(entry) != Some(Pointer::Live(leader)) {
            return Ok(false);
        }
        inner
            .followers
            .entry((entry.tenant.clone(), entry.key.clone(), leader))
            .or_default()
            .push(follower.clone());
        Ok(true)
    }

    async fn close(&self, entry: &EntryKey, leader: JobId) -> Result<Vec<JobMessage>, StoreError> {
        let mut inner = self.lock();
        // A claim still pending ends too (see `close.lua`).
        if matches!(inner.pointer(entry), Some(Pointer::Live(j) | Pointer::Pending(j)) if j == leader)
        {
            inner.pointers.remove(&pointer_key(entry));
        }
        Ok(inner
            .followers
            .get(&(entry.tenant.clone(), entry.key.clone(), leader))
            .cloned()
            .unwrap_or_default())
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
        let mut inner = self.lock();
        let now = Instant::now();
        inner.vectors.retain(|_, v| v.until > now);
        inner.vectors.insert(
            (scope.clone(), job),
            Vector {
                vector: vector.to_vec(),
                text: text.to_owned(),
                answer: None,
                until: now + ttl,
            },
        );
        for bucket in buckets {
            inner
                .buckets
                .entry((scope.clone(), bucket.clone()))
                .or_default()
                .insert(job);
        }
        Ok(())
    }

    async fn answer_vector(
        &self,
        scope: &SemanticScope,
        job: JobId,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(v) = inner.vectors.get_mut(&(scope.clone(), job)) {
            v.answer = Some(answer.clone());
            v.until = Instant::now() + ttl;
        }
        Ok(())
    }

    async fn candidates(
        &self,
        scope: &SemanticScope,
        buckets: &[String],
        max: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        let inner = self.lock();
        let now = Instant::now();
        // As the Redis script: those in the most buckets first, the newest
        // first among equals.
        let mut shared: HashMap<JobId, usize> = HashMap::new();
        for bucket in buckets {
            for id in inner
                .buckets
                .get(&(scope.clone(), bucket.clone()))
                .into_iter()
                .flatten()
            {
                *shared.entry(*id).or_default() += 1;
            }
        }
        let mut ids: Vec<(usize, JobId)> = shared.into_iter().map(|(id, n)| (n, id)).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let out = ids
            .into_iter()
            .filter_map(|(_, id)| inner.vectors.get(&(scope.clone(), id)))
            .filter_map(|v| match &v.answer {
                Some(answer) if v.until > now => Some(Candidate {
                    vector: v.vector.clone(),
                    text: v.text.clone(),
                    answer: answer.clone(),
                }),
                _ => None,
            })
            .take(max)
            .collect();
        Ok(out)
    }

    async fn add_sample(&self, tenant: &str, sample: &SemanticSample) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let kept = inner.samples.entry(tenant.to_owned()).or_default();
        kept.push_front(sample.clone());
        kept.truncate(SAMPLES_KEPT);
        Ok(())
    }

    async fn samples(&self, tenant: &str, max: usize) -> Result<Vec<SemanticSample>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .samples
            .get(tenant)
            .map(|kept| kept.iter().take(max).cloned().collect())
            .unwrap_or_default())
    }

    async fn clear(&self, tenant: &str, model: Option<&str>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let matches = |t: &str, m: &str| t == tenant && model.is_none_or(|model| model == m);
        let before = inner.entries.len() + inner.vectors.len();
        inner.entries.retain(|k, _| !matches(&k.tenant, &k.model));
        inner
            .vectors
            .retain(|(s, _), _| !matches(&s.tenant, &s.model));
        inner
            .buckets
            .retain(|(s, _), _| !matches(&s.tenant, &s.model));
        let after = inner.entries.len() + inner.vectors.len();
        Ok((before - after) as u64)
    }
}
