//! Files for the OpenAI-compatible Files API (`/v1/files`): a tenant's
//! uploads, for batches. [`FileStore`]: [`PgFileStore`] keeps them in
//! PostgreSQL (`migrations/0011_files.sql`), where every API replica reads
//! them; [`MemoryFileStore`] in process memory, for tests and `sluice dev`.
//!
//! Invariants:
//! - **No file is held whole in memory.** An upload is written as it
//!   streams in, in parts of at most [`PART_BYTES`] ([`Parts`] cuts them,
//!   one rule for both stores), and read back one part at a time.
//! - **A file is whole or absent.** An upload that fails or goes over its
//!   [`FileLimits`] leaves nothing behind; a file becomes visible once all
//!   of it is stored.
//! - **A file is its tenant's.** Every read, list and delete names the
//!   tenant; another tenant's file is not found. A file past its
//!   `expires_at` is not found either, and [`FileStore::delete_expired`]
//!   removes it.

mod memory;
mod postgres;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

pub use memory::MemoryFileStore;
pub use postgres::PgFileStore;

use crate::StoreError;

/// Content is stored in parts of at most this many bytes.
pub const PART_BYTES: usize = 1 << 20;

/// A stored file's description (its content is read with [`FileStore::read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// `file-` and a ULID.
    pub id: String,
    pub tenant_id: String,
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
    /// Lines of content (a last line without a newline counts).
    pub lines: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A file about to be uploaded: its description, counts still unknown.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub id: String,
    pub tenant_id: String,
    pub purpose: String,
    pub filename: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewFile {
    /// A fresh file id: `file-` and a ULID, so ids sort by time (made
    /// by the job ids' monotonic generator: in order within a millisecond).
    pub fn new_id() -> String {
        format!("file-{}", sluice_core::JobId::new())
    }

    fn meta(self, bytes: u64, lines: u64) -> FileMeta {
        FileMeta {
            id: self.id,
            tenant_id: self.tenant_id,
            purpose: self.purpose,
            filename: self.filename,
            bytes,
            lines,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// How large an upload may be.
#[derive(Clone, Copy, Debug)]
pub struct FileLimits {
    pub max_bytes: u64,
    pub max_lines: u64,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Over [`FileLimits`].
    #[error("{0}")]
    TooLarge(String),
    /// The content could not be read (the client's upload broke off).
    #[error("the upload could not be read: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which of a tenant's files to list, and in what order.
#[derive(Clone, Debug, Default)]
pub struct FileQuery {
    pub purpose: Option<String>,
    /// Only files after this id in the order asked.
    pub after: Option<String>,
    pub limit: usize,
    /// Oldest first (`order=asc`); newest first otherwise.
    pub oldest_first: bool,
}

/// A file's content, part by part.
pub type Content = BoxStream<'static, Result<Bytes, StoreError>>;

#[async_trait]
pub trait FileStore: Send + Sync {
    /// Stores `file` with the `content` streamed in, within `limits`;
    /// nothing is kept unless all of it is.
    async fn put(
        &self,
        file: NewFile,
        limits: FileLimits,
        content: BoxStream<'_, Result<Bytes, String>>,
    ) -> Result<FileMeta, PutError>;

    /// The tenant's file `id`, if it exists and has not expired at `now`.
    async fn get(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<FileMeta>, StoreError>;

    /// The tenant's files that match `query`, at most `query.limit`.
    async fn list(
        &self,
        tenant: &str,
        query: &FileQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<FileMeta>, StoreError>;

    /// The content of the tenant's file `id`, read a part at a time.
    async fn read(
        &self,
        tenant: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Content>, StoreError>;

    /// Deletes the tenant's file `id`; whether there was one.
    async fn delete(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Deletes every file past its `expires_at`; how many.
    async fn delete_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// An upload read part by part: [`Uploaded::next_part`] until `None`,
/// then [`Uploaded::totals`]. Both stores write their parts through this.
pub(crate) struct Uploaded<'a> {
    content: BoxStream<'a, Result<Bytes, String>>,
    parts: Option<Parts>,
    full: std::collections::VecDeque<Vec<u8>>,
    totals: (u64, u64),
}

impl<'a> Uploaded<'a> {
    pub(crate) fn new(content: BoxStream<'a, Result<Bytes, String>>, limits: FileLimits) -> Self {
        Self {
            content,
            parts: Some(Parts::new(limits)),
            full: Default::default(),
            totals: (0, 0),
        }
    }

    /// The next part of [`PART_BYTES`] (the last one shorter), in order;
    /// `None` once the content has ended.
    pub(crate) async fn next_part(&mut self) -> Result<Option<Vec<u8>>, PutError> {
        use futures::StreamExt;
        loop {
            if let Some(part) = self.full.pop_front() {
                return Ok(Some(part));
            }
            let Some(parts) = self.parts.as_mut() else {
                return Ok(None);
            };
            match self.content.next().await {
                Some(piece) => {
                    let piece = piece.map_err(PutError::Unreadable)?;
                    self.full.extend(parts.push(&piece)?);
                }
                None => {
                    let (last, bytes, lines) = parts.finish_ref();
                    self.totals = (bytes, lines);
                    self.parts = None;
                    return Ok(last);
                }
            }
        }
    }

    /// The file's bytes and lines, once every part was read.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.totals
    }
}

/// Cuts an upload into parts of [`PART_BYTES`] as it streams in, counting
/// its bytes and lines against the limits.
#[derive(Debug)]
pub struct Parts {
    limits: FileLimits,
    part: Vec<u8>,
    bytes: u64,
    newlines: u64,
    last: Option<u8>,
}

impl Parts {
    pub fn new(limits: FileLimits) -> Self {
        Self {
            limits,
            part: Vec::new(),
            bytes: 0,
            newlines: 0,
            last: None,
        }
    }

    /// Takes the next piece; the parts it filled, to be written in order.
    pub fn push(&mut self, mut piece: &[u8]) -> Result<Vec<Vec<u8>>, PutError> {
        self.bytes += piece.len() as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(PutError::TooLarge(format!(
                "the file is over {} bytes",
                self.limits.max_bytes
            )));
        }
        self.newlines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
        self.last = piece.last().copied().or(self.last);
        if self.lines() > self.limits.max_lines {
            return Err(PutError::TooLarge(format!(
                "the file is over {} lines",
                self.limits.max_lines
            )));
        }
        let mut full = Vec::new();
        while !piece.is_empty() {
            let room = PART_BYTES - self.part.len();
            let (now, rest) = piece.split_at(room.min(piece.len()));
            self.part.extend_from_slice(now);
            piece = rest;
            if self.part.len() == PART_BYTES {
                full.push(std::mem::take(&mut self.part));
            }
        }
        Ok(full)
    }

    /// Lines so far: a last line without its newline counts.
    fn lines(&self) -> u64 {
        self.newlines + u64::from(self.last.is_some_and(|b| b != b'\n'))
    }

    /// The last part (if any content is left) and the totals: bytes, lines.
    pub fn finish(mut self) -> (Option<Vec<u8>>, u64, u64) {
        self.finish_ref()
    }

    fn finish_ref(&mut self) -> (Option<Vec<u8>>, u64, u64) {
        let part = std::mem::take(&mut self.part);
        ((!part.is_empty()).then_some(part), self.bytes, self.lines())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: FileLimits = FileLimits {
        max_bytes: 10 * PART_BYTES as u64,
        max_lines: 1_000_000,
    };

    #[test]
    fn parts_are_cut_at_the_part_size_and_lines_counted() {
        let mut parts = Parts::new(ROOMY);
        let line = vec![b'x'; 999];
        let mut full = Vec::new();
        for _ in 0..2_500 {
            full.extend(parts.push(&line).unwrap());
            full.extend(parts.push(b"\n").unwrap());
        }
        full.extend(parts.push(b"no newline").unwrap());
        let (last, bytes, lines) = parts.finish();
        assert_eq!(full.len(), 2);
        assert!(full.iter().all(|p| p.len() == PART_BYTES));
        assert_eq!(bytes, 2_500 * 1000 + 10);
        assert_eq!(last.unwrap().len() as u64, bytes - 2 * PART_BYTES as u64);
        assert_eq!(lines, 2_501);
    }

    #[test]
    fn limits_refuse_as_soon_as_they_are_passed() {
        let limits = FileLimits {
            max_bytes: 10,
            max_lines: 2,
        };
        let mut parts = Parts::new(limits);
        parts.push(b"a\nb\n").unwrap();
        assert!(matches!(parts.push(b"c"), Err(PutError::TooLarge(m)) if m.contains("lines")));
        let mut parts = Parts::new(limits);
        assert!(
            matches!(parts.push(b"0123456789x"), Err(PutError::TooLarge(m)) if m.contains("bytes"))
        );
        let (last, bytes, lines) = Parts::new(limits).finish();
        assert_eq!((last, bytes, lines), (None, 0, 0));
    }
}
