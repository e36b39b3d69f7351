//! What counts as a cacheable prefix of a request: the [`Boundary`] keys
//! the prefix cache ([`cache`](crate::cache)) stores and looks up.
//!
//! Every key hashes a scope first: the API (`completions`, `chat` or
//! `messages`), the model and the request's `prompt_cache_key` (OpenAI;
//! absent is its own scope). Two requests share cached prefixes only within
//! one scope.
//!
//! - **`/v1/completions`**: the prompt's bytes in blocks of
//!   `4 × block_tokens` bytes (the tokenizer counts one token per four
//!   bytes, so a block is exactly `block_tokens` tokens). The boundaries are
//!   the ends of the whole blocks that stop strictly before the end of the
//!   prompt: a prompt of `L` bytes has `floor((L − 1) / (4 × block_tokens))`
//!   of them, and a prompt sharing its first `S` bytes with a cached one
//!   reads `floor(S / (4 × block_tokens)) × block_tokens` tokens from the
//!   cache (capped by its own boundaries). In an array `prompt`, each prompt
//!   is looked up, then stored, in order, so later prompts of a batch can
//!   hit the prefix of earlier ones.
//! - **`/v1/chat/completions`**: whole messages. The boundaries are the
//!   ends of the messages before the one the answer is generated from (the
//!   last `user` message): the system prompt and the earlier turns. A hit
//!   is the longest run of leading messages (role and text) identical to a
//!   cached one, and is worth the sum of their tokens.
//! - **`/v1/messages`** (Anthropic): content blocks, the `system` blocks
//!   first, then each message's blocks (a string content is one block).
//!   The boundaries are the ends of the blocks marked `cache_control`, as
//!   Anthropic's explicit breakpoints.
//!
//! The last message or the prompt's last bytes are never cached: a request
//! always prefills at least one token, as a real model must.

use sha2::{Digest, Sha256};

use crate::cache::{Boundary, PrefixCacheOptions};
use crate::text::count_tokens;

/// The bytes a token stands for under [`count_tokens`].
const BYTES_PER_TOKEN: u64 = 4;

/// Where a request's prefixes live: its API, model and cache key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope<'a> {
    pub(crate) api: &'static str,
    pub(crate) model: &'a str,
    pub(crate) cache_key: Option<&'a str>,
}

impl Scope<'_> {
    fn hasher(&self) -> Sha256 {
        let mut hasher = Sha256::new();
        framed(&mut hasher, b"sluice-mock/prefix/v1");
        framed(&mut hasher, self.api.as_bytes());
        framed(&mut hasher, self.model.as_bytes());
        match self.cache_key {
            None => hasher.update([0]),
            Some(key) => {
                hasher.update([1]);
                framed(&mut hasher, key.as_bytes());
            }
        }
        hasher
    }
}

/// Length-prefixed, so that no two sequences of fields hash alike.
fn framed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The block boundaries of a completions `prompt`; none when the cache is
/// off.
pub(crate) fn text_blocks(
    options: &PrefixCacheOptions,
    scope: Scope<'_>,
    prompt: &str,
) -> Vec<Boundary> {
    if !options.enabled {
        return Vec::new();
    }
    let block_tokens = options.block_tokens.get();
    let block_bytes =
        usize::try_from(block_tokens.saturating_mul(BYTES_PER_TOKEN)).unwrap_or(usize::MAX);
    let bytes = prompt.as_bytes();
    let mut hasher = scope.hasher();
    let mut boundaries = Vec::new();
    let mut start = 0usize;
    let mut tokens = 0u64;
    while let Some(end) = start
        .checked_add(block_bytes)
        .filter(|&end| end < bytes.len())
    {
        hasher.update(bytes.get(start..end).unwrap_or_default());
        tokens = tokens.saturating_add(block_tokens);
        boundaries.push(Boundary {
            key: hasher.clone().finalize().into(),
            tokens,
        });
        start = end;
    }
    boundaries
}

/// One piece of a structured prompt: a chat message or an Anthropic
/// content block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece<'a> {
    pub(crate) role: &'a str,
    pub(crate) text: &'a str,
    /// Whether a cacheable prefix ends after this piece.
    pub(crate) boundary: bool,
}

/// The boundaries after the pieces marked as such; none when the cache is
/// off. Empty prefixes (no tokens) are skipped.
pub(crate) fn piece_prefixes<'a>(
    options: &PrefixCacheOptions,
    scope: Scope<'_>,
    pieces: impl IntoIterator<Item = Piece<'a>>,
) -> Vec<Boundary> {
    if !options.enabled {
        return Vec::new();
    }
    let mut hasher = scope.hasher();
    let mut tokens = 0u64;
    let mut boundaries = Vec::new();
    for piece in pieces {
        framed(&mut hasher, piece.role.as_bytes());
        framed(&mut hasher, piece.text.as_bytes());
        tokens = tokens.saturating_add(count_tokens(piece.text));
        if piece.boundary && tokens > 0 {
            boundaries.push(Boundary {
                key: hasher.clone().finalize().into(),
                tokens,
            });
        }
    }
    boundaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(block_tokens: u64) -> PrefixCacheOptions {
        PrefixCacheOptions {
            enabled: true,
            block_tokens: std::num::NonZeroU64::new(block_tokens).unwrap(),
            ..PrefixCacheOptions::default()
        }
    }

    const SCOPE: Scope<'static> = Scope {
        api: "completions",
        model: "m",
        cache_key: None,
    };

    #[test]
    fn off_means_no_boundaries() {
        let off = PrefixCacheOptions::default();
        assert!(text_blocks(&off, SCOPE, &"x".repeat(10_000)).is_empty());
        let piece = Piece {
            role: "system",
            text: "sys",
            boundary: true,
        };
        assert!(piece_prefixes(&off, SCOPE, [piece]).is_empty());
    }

    #[test]
    fn text_blocks_stop_before_the_end() {
        // Blocks of 2 tokens = 8 bytes.
        let tokens = |len: usize| -> Vec<u64> {
            text_blocks(&on(2), SCOPE, &"a".repeat(len))
                .iter()
                .map(|b| b.tokens)
                .collect()
        };
        assert_eq!(tokens(8), Vec::<u64>::new());
        assert_eq!(tokens(9), vec![2]);
        assert_eq!(tokens(16), vec![2]);
        assert_eq!(tokens(17), vec![2, 4]);
        assert_eq!(tokens(0), Vec::<u64>::new());
    }

    #[test]
    fn shared_leading_bytes_share_keys() {
        let a = text_blocks(&on(2), SCOPE, "0123456789abcdefXYZ");
        let b = text_blocks(&on(2), SCOPE, "0123456789abcdeZXYZ");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        let other_model = Scope {
            model: "n",
            ..SCOPE
        };
        assert_ne!(
            text_blocks(&on(2), other_model, "0123456789abcdefXYZ")[0],
            a[0]
        );
        let keyed = Scope {
            cache_key: Some("k"),
            ..SCOPE
        };
        assert_ne!(text_blocks(&on(2), keyed, "0123456789abcdefXYZ")[0], a[0]);
    }

    #[test]
    fn piece_prefixes_chain_roles_and_texts() {
        let pieces = |texts: [(&'static str, &'static str); 3]| {
            texts.map(|(role, text)| Piece {
                role,
                text,
                boundary: true,
            })
        };
        let a = piece_prefixes(
            &on(64),
            SCOPE,
            pieces([("system", "be brief"), ("user", "hi"), ("assistant", "yo")]),
        );
        assert_eq!(
            a.iter().map(|b| b.tokens).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let b = piece_prefixes(
            &on(64),
            SCOPE,
            pieces([
                ("system", "be brief"),
                ("assistant", "hi"),
                ("assistant", "yo"),
            ]),
        );
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(a[2], b[2]);
        let marked = [
            Piece {
                role: "system",
                text: "be brief",
                boundary: false,
            },
            Piece {
                role: "user",
                text: "hi",
                boundary: true,
            },
        ];
        let m = piece_prefixes(&on(64), SCOPE, marked);
        assert_eq!(m, vec![a[1]]);
    }
}
