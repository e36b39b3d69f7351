//! Packs: several jobs in one RabbitMQ message.
//!
//! A quorum queue spends most of its work per message (a Raft entry, a
//! confirm, a delivery, an ack), not per byte, so jobs published together
//! (a batch submission, or the API's group commit of concurrent requests)
//! travel as packs of up to [`Topology::pack_jobs`](crate::Topology) jobs of
//! one priority class. A consumer hands out each job of a pack as its own
//! [`Delivery`](crate::Delivery); the pack is settled at the broker once
//! every part is, by the part that needed most:
//! requeue, else dead-letter, else ack ([`PartSettle`]).
//!
//! A pack delivered again (a part was requeued, or its worker died) is not
//! run as a pack: its consumer republishes each part as a message of its
//! own and acks the pack, so that from then on each job has its own
//! delivery count and a poison job dead-letters alone. Parts that had
//! already ended come back too; their stored end makes them a no-op.
//!
//! The wire format (after the marker header [`PACK_HEADER`], whose value is
//! the part count), all integers big-endian:
//! `u32 parts`, then per part `u16 headers`, per header `u16 key length,
//! key, u32 value length, value`, then `u32 body length, body`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Outgoing, QueueError, Settle, Settlement};

/// The header that marks a pack; its value is the number of parts.
pub const PACK_HEADER: &str = "sluice-pack";
/// Largest sum of part bodies in one pack (a pack may exceed it only when
/// one part alone does).
pub const MAX_PACK_BYTES: usize = 256 * 1024;

/// One job of a pack: its headers and body, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed pack: {0}")]
pub struct PackError(&'static str);

/// Groups `messages` into packs: indices, in publish order within each
/// priority class, at most `limit` jobs and about [`MAX_PACK_BYTES`] each.
/// With `limit` 1, every message is its own group.
pub fn plan(messages: &[Outgoing], limit: usize) -> Vec<Vec<usize>> {
    let limit = limit.max(1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    // The group still open for each priority class, and its body bytes.
    let mut open: Vec<(sluice_core::Priority, usize, usize)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let size = message.body.len();
        let slot = open.iter_mut().find(|(p, _, _)| *p == message.priority);
        match slot {
            Some((_, group, bytes))
                if groups[*group].len() < limit && *bytes + size <= MAX_PACK_BYTES =>
            {
                groups[*group].push(i);
                *bytes += size;
            }
            Some(slot) => {
                groups.push(vec![i]);
                *slot = (message.priority, groups.len() - 1, size);
            }
            None => {
                groups.push(vec![i]);
                open.push((message.priority, groups.len() - 1, size));
            }
        }
    }
    groups
}

/// The body of a pack of `parts`.
pub fn encode<'a>(parts: impl ExactSizeIterator<Item = &'a Outgoing>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(u32::try_from(parts.len()).unwrap_or(u32::MAX));
    for part in parts {
        out.put_u16(u16::try_from(part.headers.len()).unwrap_or(u16::MAX));
        for (key, value) in part.headers.iter().take(usize::from(u16::MAX)) {
            put_field(&mut out, key.as_bytes(), true);
            put_field(&mut out, value.as_bytes(), false);
        }
        put_field(&mut out, &part.body, false);
    }
    out.freeze()
}

fn put_field(out: &mut BytesMut, bytes: &[u8], short: bool) {
    if short {
        let len = bytes.len().min(usize::from(u16::MAX));
        out.put_u16(u16::try_from(len).unwrap_or(u16::MAX));
        out.put_slice(&bytes[..len]);
    } else {
        out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        out.put_slice(bytes);
    }
}

/// The parts of a pack body; the bodies share `body`'s buffer.
pub fn decode(body: &Bytes) -> Result<Vec<Part>, PackError> {
    let mut rest = body.clone();
    let count = take_u32(&mut rest)?;
    // Each part takes at least 6 bytes: never trust a count past that.
    if u64::from(count) * 6 > rest.len() as u64 {
        return Err(PackError("more parts announced than the body holds"));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let headers = take_u16(&mut rest)?;
        let mut map = BTreeMap::new();
        for _ in 0..headers {
            let len = usize::from(take_u16(&mut rest)?);
            let key = take_bytes(&mut rest, len)?;
            let len = take_u32(&mut rest)? as usize;
            let value = take_bytes(&mut rest, len)?;
            map.insert(text(&key)?, text(&value)?);
        }
        let len = take_u32(&mut rest)? as usize;
        let body = take_bytes(&mut rest, len)?;
        parts.push(Part { headers: map, body });
    }
    if rest.has_remaining() {
        return Err(PackError("bytes after the last part"));
    }
    Ok(parts)
}

fn take_u16(b: &mut Bytes) -> Result<u16, PackError> {
    (b.remaining() >= 2)
        .then(|| b.get_u16())
        .ok_or(PackError("truncated"))
}

fn take_u32(b: &mut Bytes) -> Result<u32, PackError> {
    (b.remaining() >= 4)
        .then(|| b.get_u32())
        .ok_or(PackError("truncated"))
}

fn take_bytes(b: &mut Bytes, len: usize) -> Result<Bytes, PackError> {
    (b.remaining() >= len)
        .then(|| b.split_to(len))
        .ok_or(PackError("truncated"))
}

fn text(b: &Bytes) -> Result<String, PackError> {
    String::from_utf8(b.to_vec()).map_err(|_| PackError("a header is not UTF-8"))
}

/// What the pack as a whole gets from its parts' settlements: a requeue
/// wins (the job must run again), then a dead-letter, then an ack.
fn combine(a: Settlement, b: Settlement) -> Settlement {
    use Settlement::{Ack, DeadLetter, Requeue};
    match (a, b) {
        (Requeue, _) | (_, Requeue) => Requeue,
        (DeadLetter, _) | (_, DeadLetter) => DeadLetter,
        (Ack, Ack) => Ack,
    }
}

struct Shared {
    remaining: usize,
    verdict: Settlement,
    /// The pack's own settlement, taken by the last part settled.
    whole: Option<Box<dyn Settle>>,
}

/// Settles one part of a pack. Until the last part, settling only records
/// what the part needs (and reports `Ok`); the last part settles the pack.
/// Parts dropped unsettled leave the pack unacked, so the broker delivers
/// it again when its channel goes, as with any dropped delivery.
pub struct PartSettle(Arc<Mutex<Shared>>);

impl PartSettle {
    /// One settlement for each of `parts` parts of the pack settled by `whole`.
    pub fn split(whole: Box<dyn Settle>, parts: usize) -> Vec<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            remaining: parts,
            verdict: Settlement::Ack,
            whole: Some(whole),
        }));
        (0..parts).map(|_| Self(Arc::clone(&shared))).collect()
    }
}

#[async_trait]
impl Settle for PartSettle {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        let last = {
            let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            shared.verdict = combine(shared.verdict, how);
            shared.remaining = shared.remaining.saturating_sub(1);
            if shared.remaining == 0 {
                shared.whole.take().map(|whole| (whole, shared.verdict))
            } else {
                None
            }
        };
        match last {
            Some((whole, verdict)) => whole.settle(verdict).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
