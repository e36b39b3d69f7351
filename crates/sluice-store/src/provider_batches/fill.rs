//! How [`append`](super::ProviderBatchStore::append) spreads lines over a
//! target's batches: one pure plan, made by both stores from what they
//! read (PostgreSQL under lock), so that the two cannot disagree.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_core::JobId;

use super::{CollectLimits, NewLine};

/// A collecting batch's totals: as read before an append, or as the
/// append leaves them.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Totals {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub close_at: DateTime<Utc>,
    pub hedge_at: DateTime<Utc>,
    pub lines: u64,
    pub bytes: u64,
}

/// A line the plan adds: to `Plan::batches[batch]`, at place `seq`.
#[derive(Debug)]
pub(super) struct Placed<'a> {
    pub line: &'a NewLine,
    pub batch: usize,
    pub seq: u64,
}

#[derive(Debug)]
pub(super) struct Plan<'a> {
    /// The batches that change, with their totals after the append: the
    /// open ones that took lines or filled up, then the new ones.
    pub batches: Vec<Totals>,
    /// The lines added, in the order given.
    pub placed: Vec<Placed<'a>>,
    /// The ids of the batches the lines went to, their home batches
    /// included, in the order the lines name them first.
    pub ids: Vec<String>,
}

/// Plans adding `lines` to a target whose collecting batches with room
/// are `open`, oldest first. `home` maps the jobs already in a batch (and
/// not re-routed from it) to that batch: they stay there, and a job named
/// twice in `lines` goes in once.
///
/// Lines go in order into the first batch that takes them, and the plan
/// never goes back to an earlier batch: a batch that has `max_lines`
/// lines, or `max_bytes` bytes, or cannot take the next line, is full and
/// closes now. An empty batch takes any line, so a line bigger than
/// `max_bytes` goes alone into a new batch (created now, closing at now +
/// `collect`). A batch's `hedge_at` is the earliest of its lines'.
pub(super) fn plan<'a>(
    open: Vec<Totals>,
    home: &HashMap<JobId, String>,
    lines: &'a [NewLine],
    limits: CollectLimits,
    now: DateTime<Utc>,
) -> Plan<'a> {
    let max_lines = u64::try_from(limits.max_lines).unwrap_or(u64::MAX).max(1);
    let mut batches = open;
    let mut cursor = 0;
    let mut placed: Vec<Placed<'a>> = Vec::new();
    let mut went: HashMap<JobId, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for line in lines {
        let job = line.job.message.id;
        let id = if let Some(id) = home.get(&job) {
            id.clone()
        } else if let Some(&b) = went.get(&job) {
            batches[b].id.clone()
        } else {
            loop {
                if cursor == batches.len() {
                    batches.push(Totals {
                        id: new_id(),
                        created_at: now,
                        close_at: after(now, limits.collect),
                        hedge_at: line.hedge_at,
                        lines: 0,
                        bytes: 0,
                    });
                }
                let b = &mut batches[cursor];
                let room =
                    b.lines < max_lines && b.bytes.saturating_add(line.bytes) <= limits.max_bytes;
                if b.lines == 0 || room {
                    placed.push(Placed {
                        line,
                        batch: cursor,
                        seq: b.lines,
                    });
                    b.lines += 1;
                    b.bytes = b.bytes.saturating_add(line.bytes);
                    b.hedge_at = b.hedge_at.min(line.hedge_at);
                    if b.lines >= max_lines || b.bytes >= limits.max_bytes {
                        b.close_at = b.close_at.min(now);
                    }
                    break;
                }
                // Full for this line: it closes, and the line tries the next.
                b.close_at = b.close_at.min(now);
                cursor += 1;
            }
            went.insert(job, cursor);
            batches[cursor].id.clone()
        };
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    // Only the batches up to the last one used changed.
    batches.truncate(if placed.is_empty() { 0 } else { cursor + 1 });
    Plan {
        batches,
        placed,
        ids,
    }
}

/// One generator per process, so that batch ids made in the same
/// millisecond (by one append or by several) still sort in the order they
/// were made: batches made at the same `now` are taken oldest first.
static IDS: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn new_id() -> String {
    let next = IDS.lock().unwrap_or_else(|e| e.into_inner()).generate();
    // The random part overflows only after 2^80 ids in one millisecond.
    next.unwrap_or_else(|_| ulid::Ulid::new()).to_string()
}

/// `now + d`, or the latest time there is if that is later still.
pub(super) fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
