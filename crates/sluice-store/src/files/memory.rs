//! [`FileStore`] in process memory, for tests and `sluice dev`: the same
//! rules (parts, limits, tenants, expiry) as PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{Content, FileLimits, FileMeta, FileQuery, FileStore, NewFile, PutError, Uploaded};
use crate::StoreError;

#[derive(Default)]
pub struct MemoryFileStore {
    /// Each file with its parts, by id.
    files: Mutex<BTreeMap<String, (FileMeta, Vec<Bytes>)>>,
}

impl MemoryFileStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (FileMeta, Vec<Bytes>)>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn visible(meta: &FileMeta, tenant: &str, now: DateTime<Utc>) -> bool {
        meta.tenant_id == tenant && meta.expires_at.is_none_or(|at| at > now)
    }
}

#[async_trait]
impl FileStore for MemoryFileStore {
    async fn put(
        &self,
        file: NewFile,
        limits: FileLimits,
        content: BoxStream<'_, Result<Bytes, String>>,
    ) -> Result<FileMeta, PutError> {
        let mut upload = Uploaded::new(content, limits);
        let mut stored = Vec::new();
        while let Some(part) = upload.next_part().await? {
            stored.push(Bytes::from(part));
        }
        let (bytes, lines) = upload.totals();
        let meta = file.meta(bytes, lines);
        self.lock().insert(meta.id.clone(), (meta.clone(), stored));
        Ok(meta)
    }

    async fn get(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FileMeta>, StoreError> {
        Ok(self
            .lock()
            .get(id)
            .filter(|(meta, _)| Self::visible(meta, tenant, now))
            .map(|(meta, _)| meta.clone()))
    }

    async fn list(
        &self,
        tenant: &str,
        query: &FileQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<FileMeta>, StoreError> {
        let files = self.lock();
        let matching = files.values().map(|(meta, _)| meta).filter(|meta| {
            Self::visible(meta, tenant, now)
                && query.purpose.as_ref().is_none_or(|p| *p == meta.purpose)
                && query.after.as_ref().is_none_or(|after| {
                    if query.oldest_first {
                        meta.id > *after
                    } else {
                        meta.id < *after
                    }
                })
        });
        let listed: Vec<FileMeta> = if query.oldest_first {
            matching.take(query.limit).cloned().collect()
        } else {
            let all: Vec<&FileMeta> = matching.collect();
            all.into_iter().rev().take(query.limit).cloned().collect()
        };
        Ok(listed)
    }

    async fn read(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Content>, StoreError> {
        let parts = self
            .lock()
            .get(id)
            .filter(|(meta, _)| Self::visible(meta, tenant, now))
            .map(|(_, parts)| parts.clone());
        Ok(parts.map(|parts| futures::stream::iter(parts.into_iter().map(Ok)).boxed()))
    }

    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let mut files = self.lock();
        if files
            .get(id)
            .is_some_and(|(meta, _)| meta.tenant_id == tenant)
        {
            files.remove(id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn delete_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut files = self.lock();
        let before = files.len();
        files.retain(|_, (meta, _)| meta.expires_at.is_none_or(|at| at > now));
        Ok((before - files.len()) as u64)
    }
}
