//! The latency model: how long the mock takes to answer a request.
//!
//! A request is one or more sequences (one per prompt; a chat request or a
//! single prompt is one). For sequence `i` with `p_i` prompt tokens, of
//! which `k_i` were read from the prefix cache, and `d_i` completion tokens
//! to decode (per choice; choices decode in parallel):
//!
//! ```text
//! prefill_i = (p_i − k_i) × per_prompt_token + k_i × per_cached_prompt_token
//! prefill   = (1 − e) × Σ prefill_i + e × max prefill_i    (e = batch_efficiency)
//! decode    = max d_i × per_completion_token
//! base      = fixed + prefill + decode
//! latency   = base × (1 + jitter × r) × slowdown + stall
//! ```
//!
//! `r` is uniform in `[−1, 1]` (in millionths), drawn from the seed and the
//! request's sequence number (see [`dice`](crate::dice)); `stall` is zero
//! unless [`Faults`](crate::Faults) stalls the request; `slowdown` is 1,
//! or [`FlexOptions::slowdown`](crate::FlexOptions) for a flex request.
//! Every step is integer nanoseconds, rounded down, saturating.
//!
//! With `e = 0` (the default) a batch prefills its prompts one after the
//! other, as the mock always did; with `e = 1` it prefills them all in the
//! time of the longest. For any `e` in `[0, 1]` a batch costs at most
//! `fixed + Σ prefill_i + max decode`, less than its prompts sent one by one
//! (`n × fixed + Σ prefill_i + Σ decode_i`) whenever there are at least two
//! and `fixed` or decode is not zero.
//!
//! A streamed answer needs the total split in two ([`LatencyParts`]): the
//! wait for the first token, `fixed + prefill`, and `decode`, over which the
//! tokens are spread. Jitter, the flex slowdown and a stall apply to the
//! whole as above; [`LatencyParts::scaled_to`] then shares the result out,
//! the stall going to the first-token wait, so that the two parts always
//! add up to exactly what a non-streamed answer waits.

use std::time::Duration;

use crate::dice::{draw, spread, Purpose};
use crate::options::MockOptions;

/// One sequence of a request, as the latency model sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sequence {
    /// Every prompt token of the sequence, cached or not.
    pub prompt_tokens: u64,
    /// Of those, read from the prefix cache.
    pub cached_tokens: u64,
    /// Completion tokens to decode.
    pub decode_tokens: u64,
}

/// A latency split into the wait for the first token and the decode
/// that follows; [`total`](Self::total) is the whole latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyParts {
    /// Until the first token: the fixed cost and prefill (and, once
    /// scaled, any stall).
    pub first_token: Duration,
    /// From the first token to the last.
    pub decode: Duration,
}

impl LatencyParts {
    /// Both parts, saturating at about 584 years as [`base_latency`](MockOptions::base_latency) does.
    pub fn total(&self) -> Duration {
        nanos(
            self.first_token
                .as_nanos()
                .saturating_add(self.decode.as_nanos()),
        )
    }

    /// The parts of a latency that became `scaled` (jitter and slowdown
    /// applied to [`total`](Self::total)) and then took `stall` more:
    /// decode scaled in proportion, the rest, stall included, before the
    /// first token. The parts add up to exactly `scaled + stall`.
    pub fn scaled_to(&self, scaled: Duration, stall: Duration) -> Self {
        let base = self.total().as_nanos();
        // decode ≤ base, so the quotient is at most `scaled`; no base, no
        // decode.
        let decode = self
            .decode
            .as_nanos()
            .saturating_mul(scaled.as_nanos())
            .checked_div(base)
            .unwrap_or(0);
        let decode = nanos(decode.min(scaled.as_nanos()));
        let total = scaled.saturating_add(stall);
        Self {
            first_token: total.saturating_sub(decode),
            decode,
        }
    }
}

impl MockOptions {
    /// How long a single uncached sequence takes: the fixed cost, plus
    /// prefill for `prefill_tokens`, plus decode for `decode_tokens`.
    /// Saturates instead of overflowing.
    pub fn latency(&self, prefill_tokens: u64, decode_tokens: u64) -> Duration {
        self.base_latency([Sequence {
            prompt_tokens: prefill_tokens,
            cached_tokens: 0,
            decode_tokens,
        }])
    }

    /// The latency of a native batch of uncached sequences, given
    /// `(prompt_tokens, completion_tokens)` for each: see [`base_latency`](Self::base_latency).
    pub fn batch_latency(&self, sequences: impl IntoIterator<Item = (u64, u64)>) -> Duration {
        self.base_latency(sequences.into_iter().map(|(p, c)| Sequence {
            prompt_tokens: p,
            cached_tokens: 0,
            decode_tokens: c,
        }))
    }

    /// `base` in the [module documentation](self): the latency before jitter
    /// and stalls.
    pub fn base_latency(&self, sequences: impl IntoIterator<Item = Sequence>) -> Duration {
        self.latency_parts(sequences).total()
    }

    /// `base` split in two: `fixed + prefill`, then `decode`.
    pub fn latency_parts(&self, sequences: impl IntoIterator<Item = Sequence>) -> LatencyParts {
        let l = &self.latency;
        let per_prompt = micros_as_nanos(l.per_prompt_token_us);
        let per_cached = micros_as_nanos(l.per_cached_prompt_token_us);
        let (mut sum, mut max, mut decode) = (0u128, 0u128, 0u64);
        for sequence in sequences {
            let cached = sequence.cached_tokens.min(sequence.prompt_tokens);
            let uncached = sequence.prompt_tokens - cached;
            let prefill = per_prompt
                .saturating_mul(u128::from(uncached))
                .saturating_add(per_cached.saturating_mul(u128::from(cached)));
            sum = sum.saturating_add(prefill);
            max = max.max(prefill);
            decode = decode.max(sequence.decode_tokens);
        }
        let prefill = sum - l.batch_efficiency.of(sum - max);
        let decode = micros_as_nanos(l.per_completion_token_us).saturating_mul(u128::from(decode));
        let first_token = Duration::from_millis(l.fixed_ms)
            .as_nanos()
            .saturating_add(prefill);
        LatencyParts {
            first_token: nanos(first_token),
            decode: nanos(decode),
        }
    }

    /// `base × (1 + jitter × r)` for the request numbered `sequence`.
    pub fn jittered(&self, base: Duration, sequence: u64) -> Duration {
        spread(
            base,
            self.latency.jitter,
            draw(self.seed, sequence, Purpose::Jitter),
        )
    }
}

fn micros_as_nanos(micros: u64) -> u128 {
    Duration::from_micros(micros).as_nanos()
}

/// A duration of `nanos`, saturating at about 584 years.
fn nanos(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LatencyOptions;
    use crate::ratio::Ratio;

    fn opts() -> MockOptions {
        MockOptions {
            latency: LatencyOptions {
                fixed_ms: 50,
                per_prompt_token_us: 100,
                per_completion_token_us: 10_000,
                ..LatencyOptions::default()
            },
            ..MockOptions::default()
        }
    }

    #[test]
    fn default_is_instant() {
        let o = MockOptions::default();
        assert_eq!(o.latency(1_000, 1_000), Duration::ZERO);
        assert_eq!(o.jittered(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn latency_is_fixed_plus_prefill_plus_decode() {
        let o = opts();
        assert_eq!(o.latency(0, 0), Duration::from_millis(50));
        // 50ms + 200 * 0.1ms + 16 * 10ms
        assert_eq!(o.latency(200, 16), Duration::from_millis(50 + 20 + 160));
    }

    #[test]
    fn batch_sums_prefill_and_maxes_decode() {
        let o = opts();
        let seqs = [(100, 16), (300, 8), (200, 32)];
        // 50ms + 600 * 0.1ms + 32 * 10ms
        assert_eq!(o.batch_latency(seqs), Duration::from_millis(50 + 60 + 320));
        let one_by_one: Duration = seqs.iter().map(|&(p, c)| o.latency(p, c)).sum();
        assert!(o.batch_latency(seqs) < one_by_one);
        assert_eq!(o.batch_latency([]), Duration::from_millis(50));
    }

    #[test]
    fn batch_efficiency_moves_prefill_from_sum_to_max() {
        let seqs = [(100, 16), (300, 8), (200, 32)];
        // Σ prefill = 60 ms, max = 30 ms.
        for (e, prefill_ms) in [(0, 60), (50, 45), (100, 30)] {
            let mut o = opts();
            o.latency.batch_efficiency = Ratio::percent(e);
            let expected = Duration::from_millis(50 + prefill_ms + 320);
            assert_eq!(o.batch_latency(seqs), expected, "e = {e}%");
            let one_by_one: Duration = seqs.iter().map(|&(p, c)| o.latency(p, c)).sum();
            assert!(o.batch_latency(seqs) < one_by_one);
        }
    }

    #[test]
    fn cached_tokens_prefill_at_their_own_rate() {
        let mut o = opts();
        o.latency.per_cached_prompt_token_us = 10;
        let seq = Sequence {
            prompt_tokens: 200,
            cached_tokens: 150,
            decode_tokens: 16,
        };
        // 50ms + 50 * 0.1ms + 150 * 0.01ms + 16 * 10ms
        let expected = Duration::from_micros(50_000 + 5_000 + 1_500 + 160_000);
        assert_eq!(o.base_latency([seq]), expected);
        assert!(o.base_latency([seq]) < o.latency(200, 16));
    }

    #[test]
    fn jitter_stays_within_its_band_and_is_seeded() {
        let mut o = opts();
        o.latency.jitter = Ratio::percent(20);
        o.seed = 9;
        let base = Duration::from_millis(100);
        let samples: Vec<Duration> = (0..1_000).map(|i| o.jittered(base, i)).collect();
        let (lo, hi) = (Duration::from_millis(80), Duration::from_millis(120));
        assert!(samples.iter().all(|d| (lo..=hi).contains(d)));
        assert!(samples.iter().any(|d| *d < Duration::from_millis(85)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(115)));
        let again: Vec<Duration> = (0..1_000).map(|i| o.jittered(base, i)).collect();
        assert_eq!(samples, again);
        let reseeded = MockOptions {
            seed: 10,
            ..o.clone()
        };
        assert_ne!(
            samples[..10],
            (0..10)
                .map(|i| reseeded.jittered(base, i))
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn parts_split_the_base_latency() {
        let o = opts();
        let parts = o.latency_parts([Sequence {
            prompt_tokens: 200,
            cached_tokens: 0,
            decode_tokens: 16,
        }]);
        assert_eq!(parts.first_token, Duration::from_millis(50 + 20));
        assert_eq!(parts.decode, Duration::from_millis(160));
        assert_eq!(parts.total(), o.latency(200, 16));
    }

    #[test]
    fn scaled_parts_add_up_to_the_scaled_latency() {
        let parts = LatencyParts {
            first_token: Duration::from_millis(100),
            decode: Duration::from_millis(300),
        };
        // Three times slower, plus a 50 ms stall: decode triples, the
        // stall waits before the first token.
        let scaled = parts.scaled_to(Duration::from_millis(1_200), Duration::from_millis(50));
        assert_eq!(scaled.decode, Duration::from_millis(900));
        assert_eq!(scaled.first_token, Duration::from_millis(350));
        // Rounding never loses a nanosecond of the total.
        let odd = parts.scaled_to(Duration::from_nanos(1_000_000_007), Duration::ZERO);
        assert_eq!(odd.total(), Duration::from_nanos(1_000_000_007));
        assert_eq!(
            LatencyParts::default().scaled_to(Duration::ZERO, Duration::from_millis(5)),
            LatencyParts {
                first_token: Duration::from_millis(5),
                decode: Duration::ZERO,
            }
        );
        let huge = LatencyParts {
            first_token: Duration::from_nanos(u64::MAX),
            decode: Duration::from_nanos(u64::MAX),
        };
        let scaled = huge.scaled_to(huge.total(), Duration::ZERO);
        assert_eq!(scaled.total(), huge.total());
    }

    #[test]
    fn latency_saturates() {
        let o = opts();
        let huge = o.latency(u64::MAX, u64::MAX);
        assert!(huge >= Duration::from_nanos(u64::MAX));
    }
}
