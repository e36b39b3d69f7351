//! Seeded, reproducible draws for jitter and fault injection.
//!
//! Every decision the mock makes at random is a pure function of the seed
//! ([`MockOptions::seed`](crate::MockOptions::seed)), the request's
//! sequence number (0 for the first admitted `/v1` request since start or
//! reset, then 1, 2, …) and what the draw is for. The same seed and the
//! same order of requests give the same latencies and the same faults, and
//! a retried request gets a fresh draw, as it would from a real provider.
//! No dependency: SplitMix64 is a few lines and good enough for this.

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
}

impl Purpose {
    fn salt(self) -> u64 {
        match self {
            Purpose::Error => 0x6572_726f_7200_0001,
            Purpose::ErrorStatus => 0x7374_6174_7573_0002,
            Purpose::Stall => 0x7374_616c_6c00_0003,
            Purpose::Jitter => 0x6a69_7474_6572_0004,
        }
    }
}

/// A uniform 64-bit value for request `sequence` under `seed`.
pub(crate) fn draw(seed: u64, sequence: u64, purpose: Purpose) -> u64 {
    splitmix64(splitmix64(seed ^ purpose.salt()) ^ sequence)
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
