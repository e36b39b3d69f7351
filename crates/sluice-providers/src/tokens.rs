//! Token counts for splitting a batch call's reported total across its
//! jobs: the model's own tokenizer where tiktoken knows the model (OpenAI
//! names), cl100k_base otherwise. A count here only decides each job's
//! share of what the provider reported; the parts always sum to the
//! provider's total, and nothing is billed from a count alone.

use tiktoken_rs::CoreBPE;

/// The model's tokenizer. An unknown model is looked up without going
/// through `bpe_for_model`'s error: that is an `anyhow` error, which
/// captures a backtrace on every call when `RUST_BACKTRACE` is set, and
/// that cost more than the counting itself.
fn tokenizer(model: &str) -> &'static CoreBPE {
    tiktoken_rs::tokenizer::get_tokenizer(model)
        .and_then(|t| tiktoken_rs::bpe_for_tokenizer(t).ok())
        .unwrap_or_else(tiktoken_rs::cl100k_base_singleton)
}

/// Tokens in `text` for `model` (at least 1, so an empty prompt still
/// takes a share of a fixed per-prompt cost).
pub fn count(model: &str, text: &str) -> u64 {
    (tokenizer(model).encode_ordinary(text).len() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_models_tokenizer_or_cl100k() {
        assert_eq!(count("gpt-4o", "hello world"), 2);
        assert_eq!(count("some-local-model", "hello world"), 2);
        assert_eq!(count("gpt-4o", ""), 1);
        assert!(count("gpt-4", &"word ".repeat(100)) >= 100);
    }
}
