//! The prompt-prefix cache's store: which prefixes the mock "has in KV
//! cache", bounded in size (least recently used goes first) and in time (an
//! entry unused for the TTL is gone).
//!
//! It stores [`Boundary`] keys computed by [`prefix`](crate::prefix); what
//! a boundary is for each API is documented there. A lookup finds the
//! longest boundary of the request that is cached, then stores all of the
//! request's boundaries (refreshing the ones already there), as a serving
//! engine keeps the KV blocks of the prompts it has just prefilled.

use std::collections::{BTreeMap, HashMap};
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use clap::{ArgAction, Args};
use serde::Deserialize;
use tokio::time::Instant;

/// `[prefix_cache]` and the `--prefix-cache*` flags: how the prefix cache
/// behaves. [`Default`] disables it: no request is reported cached,
/// discounted or sped up unless this is turned on.
#[derive(Args, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "Prefix cache")]
pub struct PrefixCacheOptions {
    /// Turns the prompt-prefix cache on: repeated prefixes are reported in
    /// usage (cached_tokens, cache_read_input_tokens), billed at the cached
    /// price and prefilled at the cached rate.
    #[arg(
        long = "prefix-cache",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub enabled: bool,
    /// Granularity of /v1/completions prefixes: a cached prefix is a whole
    /// number of blocks of this many tokens (see `prefix`).
    #[arg(long = "prefix-cache-block-tokens", default_value_t = BLOCK_TOKENS)]
    pub block_tokens: NonZeroU64,
    /// Most prefixes remembered (the least recently used goes first).
    #[arg(long = "prefix-cache-max-entries", default_value_t = MAX_ENTRIES)]
    pub max_entries: NonZeroUsize,
    /// A prefix unused for this many seconds is forgotten.
    #[arg(long = "prefix-cache-ttl-secs", default_value_t = TTL_SECS)]
    pub ttl_secs: u64,
}

const BLOCK_TOKENS: NonZeroU64 = match NonZeroU64::new(64) {
    Some(tokens) => tokens,
    None => panic!("64 is not zero"),
};

const MAX_ENTRIES: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(entries) => entries,
    None => panic!("10 000 is not zero"),
};

const TTL_SECS: u64 = 300;

impl Default for PrefixCacheOptions {
    fn default() -> Self {
        Self {
            enabled: false,
            block_tokens: BLOCK_TOKENS,
            max_entries: MAX_ENTRIES,
            ttl_secs: TTL_SECS,
        }
    }
}

impl PrefixCacheOptions {
    /// How long an unused prefix is kept.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

/// One cacheable prefix of a request: a hash of everything up to it (and
/// of the scope: API, model, `prompt_cache_key`), and its length in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub(crate) key: [u8; 32],
    pub(crate) tokens: u64,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheOutcome {
    /// Tokens of the longest boundary that was cached: read from the cache.
    pub(crate) read_tokens: u64,
    /// Tokens past that up to the request's longest boundary, now written
    /// to the cache (zero if the longest boundary was the one read).
    pub(crate) written_tokens: u64,
}

#[derive(Debug)]
struct Slot {
    /// Position in `by_use`; larger is more recent.
    stamp: u64,
    last_used: Instant,
}

/// The store. Not thread-safe by itself; the server holds it in a mutex.
#[derive(Debug, Default)]
pub(crate) struct PrefixCache {
    slots: HashMap<[u8; 32], Slot>,
    /// Stamps in use order, oldest first, for eviction and expiry.
    by_use: BTreeMap<u64, [u8; 32]>,
    next_stamp: u64,
}

impl PrefixCache {
    /// Looks `boundaries` up (ascending by tokens) at `now`, then stores
    /// them all.
    pub(crate) fn lookup_and_store(
        &mut self,
        options: &PrefixCacheOptions,
        boundaries: &[Boundary],
        now: Instant,
    ) -> CacheOutcome {
        self.expire(options.ttl(), now);
        let read_tokens = boundaries
            .iter()
            .filter(|b| self.slots.contains_key(&b.key))
            .map(|b| b.tokens)
            .max()
            .unwrap_or(0);
        let longest = boundaries.iter().map(|b| b.tokens).max().unwrap_or(0);
        for boundary in boundaries {
            self.store(boundary, now);
        }
        self.evict(options.max_entries.get());
        CacheOutcome {
            read_tokens,
            written_tokens: longest.saturating_sub(read_tokens),
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    fn store(&mut self, boundary: &Boundary, now: Instant) {
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.wrapping_add(1);
        let slot = Slot {
            stamp,
            last_used: now,
        };
        if let Some(old) = self.slots.insert(boundary.key, slot) {
            self.by_use.remove(&old.stamp);
        }
        self.by_use.insert(stamp, boundary.key);
    }

    /// Drops entries unused for `ttl`. Use order is time order, so they
    /// are all at the front.
    fn expire(&mut self, ttl: Duration, now: Instant) {
        while let Some((&stamp, key)) = self.by_use.first_key_value() {
            let expired = self.slots.get(key).is_none_or(|slot| {
                slot.last_used
                    .checked_add(ttl)
                    .is_some_and(|end| end <= now)
            });
            if !expired {
                break;
            }
            let key = *key;
            self.by_use.remove(&stamp);
            self.slots.remove(&key);
        }
    }

    fn evict(&mut self, max_entries: usize) {
        while self.slots.len() > max_entries {
            let Some((_, key)) = self.by_use.pop_first() else {
                break;
            };
            self.slots.remove(&key);
        }
    }

    #[cfg(test)]
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.slots.contains_key(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u8, tokens: u64) -> Boundary {
        Boundary {
            key: [id; 32],
            tokens,
        }
    }

    fn on() -> PrefixCacheOptions {
        PrefixCacheOptions {
            enabled: true,
            max_entries: NonZeroUsize::new(3).unwrap(),
            ttl_secs: 10,
            ..PrefixCacheOptions::default()
        }
    }

    #[test]
    fn first_time_writes_then_reads_the_longest_hit() {
        let mut cache = PrefixCache::default();
        let now = Instant::now();
        let first = cache.lookup_and_store(&on(), &[b(1, 64), b(2, 128)], now);
        assert_eq!(
            first,
            CacheOutcome {
                read_tokens: 0,
                written_tokens: 128
            }
        );
        // Shares the first block only.
        let second = cache.lookup_and_store(&on(), &[b(1, 64), b(3, 128)], now);
        assert_eq!(
            second,
            CacheOutcome {
                read_tokens: 64,
                written_tokens: 64
            }
        );
        let third = cache.lookup_and_store(&on(), &[b(1, 64), b(3, 128)], now);
        assert_eq!(
            third,
            CacheOutcome {
                read_tokens: 128,
                written_tokens: 0
            }
        );
        assert!(cache.contains(&[3; 32]));
        assert_eq!(
            cache.lookup_and_store(&on(), &[], now),
            CacheOutcome::default()
        );
    }

    #[test]
    fn entries_expire_after_ttl_without_use() {
        let mut cache = PrefixCache::default();
        let start = Instant::now();
        cache.lookup_and_store(&on(), &[b(1, 64)], start);
        // Used at 9 s: refreshed until 19 s.
        let hit = cache.lookup_and_store(&on(), &[b(1, 64)], start + Duration::from_secs(9));
        assert_eq!(hit.read_tokens, 64);
        let hit = cache.lookup_and_store(&on(), &[b(1, 64)], start + Duration::from_secs(18));
        assert_eq!(hit.read_tokens, 64);
        let miss = cache.lookup_and_store(&on(), &[b(1, 64)], start + Duration::from_secs(28));
        assert_eq!(miss.read_tokens, 0);
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let mut cache = PrefixCache::default();
        let now = Instant::now();
        for id in 1..=3 {
            cache.lookup_and_store(&on(), &[b(id, 64)], now);
        }
        // Touch 1, then add 4: 2 is the least recently used.
        cache.lookup_and_store(&on(), &[b(1, 64)], now);
        cache.lookup_and_store(&on(), &[b(4, 64)], now);
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&[2; 32]));
        assert!(cache.contains(&[1; 32]));
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
