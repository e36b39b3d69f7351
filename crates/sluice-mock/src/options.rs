//! How the mock behaves: its latency model, its defaults and its optional
//! API key.

use std::fmt;
use std::time::Duration;

/// The mock's configuration. [`Default`] answers instantly, with 16
/// completion tokens and 16-dimensional embeddings, and needs no key.
#[derive(Clone, PartialEq, Eq)]
pub struct MockOptions {
    /// Paid once per request, whatever its size (connection, scheduling).
    pub latency_fixed: Duration,
    /// Prefill cost per prompt token.
    pub latency_per_prompt_token: Duration,
    /// Decode cost per completion token of the longest sequence.
    pub latency_per_completion_token: Duration,
    /// Completion tokens when the request gives no `max_tokens`.
    pub default_max_tokens: u64,
    /// Embedding length when the request gives no `dimensions`.
    pub embedding_dims: usize,
    /// When set, every `/v1` and `/mock` request must carry
    /// `Authorization: Bearer <key>`, or is answered 401.
    pub api_key: Option<String>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency_fixed: Duration::ZERO,
            latency_per_prompt_token: Duration::ZERO,
            latency_per_completion_token: Duration::ZERO,
            default_max_tokens: 16,
            embedding_dims: 16,
            api_key: None,
        }
    }
}

// Written by hand so that the key never reaches a log.
impl fmt::Debug for MockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockOptions")
            .field("latency_fixed", &self.latency_fixed)
            .field("latency_per_prompt_token", &self.latency_per_prompt_token)
            .field(
                "latency_per_completion_token",
                &self.latency_per_completion_token,
            )
            .field("default_max_tokens", &self.default_max_tokens)
            .field("embedding_dims", &self.embedding_dims)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MockOptions {
    /// How long a request takes: the fixed cost, plus prefill for
    /// `prefill_tokens`, plus decode for `decode_tokens`. Saturates instead
    /// of overflowing.
    pub fn latency(&self, prefill_tokens: u64, decode_tokens: u64) -> Duration {
        self.latency_fixed
            .saturating_add(scale(self.latency_per_prompt_token, prefill_tokens))
            .saturating_add(scale(self.latency_per_completion_token, decode_tokens))
    }

    /// The latency of a native batch, given `(prompt_tokens,
    /// completion_tokens)` for each of its sequences. Prefill is paid for
    /// every prompt (the sum), but the sequences decode in parallel, so
    /// decode is paid once for the longest (the max). That is why a batch
    /// call is faster than the same prompts sent one by one.
    pub fn batch_latency(&self, sequences: impl IntoIterator<Item = (u64, u64)>) -> Duration {
        let (prefill, decode) = sequences
            .into_iter()
            .fold((0u64, 0u64), |(prefill, decode), (p, c)| {
                (prefill.saturating_add(p), decode.max(c))
            });
        self.latency(prefill, decode)
    }
}

/// `per_token * tokens`, saturating at about 584 years.
fn scale(per_token: Duration, tokens: u64) -> Duration {
    let nanos = per_token.as_nanos().saturating_mul(u128::from(tokens));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> MockOptions {
        MockOptions {
            latency_fixed: Duration::from_millis(50),
            latency_per_prompt_token: Duration::from_micros(100),
            latency_per_completion_token: Duration::from_millis(10),
            ..MockOptions::default()
        }
    }

    #[test]
    fn default_is_instant() {
        let o = MockOptions::default();
        assert_eq!(o.latency(1_000, 1_000), Duration::ZERO);
        assert_eq!(o.default_max_tokens, 16);
        assert_eq!(o.embedding_dims, 16);
        assert_eq!(o.api_key, None);
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
    fn latency_saturates() {
        let o = opts();
        let huge = o.latency(u64::MAX, u64::MAX);
        assert!(huge >= Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn debug_redacts_the_key() {
        let o = MockOptions {
            api_key: Some("sk-secret".into()),
            ..MockOptions::default()
        };
        let shown = format!("{o:?}");
        assert!(!shown.contains("sk-secret"));
        assert!(shown.contains("<redacted>"));
    }
}
