//! Seeded, reproducible draws for jitter and fault injection.
//!
//! Every decision the mock makes at random is a pure function of the seed
//! ([`MockOptions::seed`](crate::MockOptions::seed)), a sequence number
//! and what the draw is for. The same seed and the same order of requests
//! give the same latencies and the same faults, and a retried request gets
//! a fresh draw, as it would from a real provider. Sequence numbers count
//! from 0 since start or reset, each kind apart:
//!
//! - admitted `/v1` requests (jitter, faults);
//! - flex requests, before admission (flex unavailability);
//! - batches created (turnaround, hold, refusal), and within a batch its
//!   lines by input order (line order, line failures): see [`line`].
//!
//! No dependency: SplitMix64 is a few lines and good enough for this.

use std::time::Duration;

use crate::ratio::Ratio;

/// What a draw decides; each gets an independent stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Whether the request fails with an injected 5xx.
    Error,
    /// Which 5xx (500 or 503).
    ErrorStatus,
    /// Whether the request stalls.
    Stall,
    /// The latency jitter.
    Jitter,
    /// Whether a flex request finds no capacity.
    FlexUnavailable,
    /// A batch's turnaround jitter.
    Turnaround,
    /// Whether a batch is held.
    Hold,
    /// Whether a batch's creation is refused.
    Refuse,
    /// Where a line falls in its batch's completion order.
    LineOrder,
    /// Whether a line fails.
    LineFailure,
}

impl Purpose {
    fn salt(self) -> u64 {
        match self {
            Purpose::Error => 0x6572_726f_7200_0001,
            Purpose::ErrorStatus => 0x7374_6174_7573_0002,
            Purpose::Stall => 0x7374_616c_6c00_0003,
            Purpose::Jitter => 0x6a69_7474_6572_0004,
            Purpose::FlexUnavailable => 0x666c_6578_0000_0005,
            Purpose::Turnaround => 0x7475_726e_0000_0006,
            Purpose::Hold => 0x686f_6c64_0000_0007,
            Purpose::Refuse => 0x7265_6675_7365_0008,
            Purpose::LineOrder => 0x6f72_6465_7200_0009,
            Purpose::LineFailure => 0x6c69_6e65_0000_000a,
        }
    }
}

/// A uniform 64-bit value for request `sequence` under `seed`.
pub(crate) fn draw(seed: u64, sequence: u64, purpose: Purpose) -> u64 {
    splitmix64(splitmix64(seed ^ purpose.salt()) ^ sequence)
}

/// The sequence number of line `index` of the batch numbered `batch`: the
/// batch in the high 32 bits, the line in the low (batches hold far fewer
/// than 2³² lines).
pub(crate) fn line(batch: u64, index: usize) -> u64 {
    (batch << 32) ^ index as u64
}

/// `base × (1 + spread × r)`, `r` uniform in `[−1, 1]` (in millionths)
/// from `draw`: latency jitter and batch turnaround both vary by this rule.
/// Integer nanoseconds, rounded down, saturating.
pub(crate) fn spread(base: Duration, spread: Ratio, draw: u64) -> Duration {
    if spread.is_zero() {
        return base;
    }
    let span = 2 * u64::from(Ratio::SCALE) + 1;
    let r = i64::try_from(draw % span).unwrap_or(0) - i64::from(Ratio::SCALE);
    let base_nanos = base.as_nanos();
    let delta = spread.of(
        Ratio::from_ppm(u32::try_from(r.unsigned_abs()).unwrap_or(Ratio::SCALE)).of(base_nanos),
    );
    let nanos = if r < 0 {
        base_nanos - delta
    } else {
        base_nanos.saturating_add(delta)
    };
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// SplitMix64's finaliser (Steele, Lea and Flood, 2014): a bijection on
/// `u64` whose outputs for consecutive inputs look independent.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_independent() {
        assert_eq!(draw(7, 3, Purpose::Error), draw(7, 3, Purpose::Error));
        assert_ne!(draw(7, 3, Purpose::Error), draw(8, 3, Purpose::Error));
        assert_ne!(draw(7, 3, Purpose::Error), draw(7, 4, Purpose::Error));
        assert_ne!(draw(7, 3, Purpose::Error), draw(7, 3, Purpose::Stall));
    }

    #[test]
    fn roughly_uniform() {
        // The low bit is set about half the time, as is the high bit.
        let n = 10_000u64;
        let low = (0..n).filter(|&i| draw(1, i, Purpose::Jitter) & 1 == 1);
        let high = (0..n).filter(|&i| draw(1, i, Purpose::Jitter) >> 63 == 1);
        for count in [low.count(), high.count()] {
            assert!((4_700..=5_300).contains(&count), "{count}");
        }
    }
}
