//! What the two conversation routes share, `/v1/chat/completions` and
//! Anthropic's `/v1/messages`: a non-empty list of messages, the one
//! answered, and the whole conversation as one sequence whose cacheable
//! prefixes end after some of its pieces (see [`prefix`](crate::prefix)).

use crate::cache::CacheOutcome;
use crate::error::ApiError;
use crate::latency::Sequence;
use crate::prefix::{piece_prefixes, Piece, Scope};
use crate::state::{Shared, Work};

/// The request's messages, or a 400 saying `missing` when there are none.
pub(super) fn require_messages<T>(
    messages: Option<Vec<T>>,
    missing: &str,
) -> Result<Vec<T>, ApiError> {
    match messages {
        Some(messages) if !messages.is_empty() => Ok(messages),
        _ => Err(ApiError::invalid("messages", missing)),
    }
}

/// The index of the message answered, given each message's role: the last
/// `user` message, or the last message when there is none (say, only a
/// system prompt).
pub(super) fn answered<'a>(roles: impl ExactSizeIterator<Item = &'a str>) -> usize {
    let count = roles.len();
    roles
        .enumerate()
        .filter(|(_, role)| *role == "user")
        .map(|(index, _)| index)
        .last()
        .unwrap_or(count.saturating_sub(1))
}

/// One conversation to serve.
pub(super) struct Conversation<'a, P> {
    pub(super) scope: Scope<'a>,
    /// Its pieces in order; a cacheable prefix ends after each one marked
    /// as a boundary.
    pub(super) pieces: P,
    /// Every prompt token, cached or not.
    pub(super) prompt_tokens: u64,
    /// The answer's length (choices decode in parallel).
    pub(super) decode_tokens: u64,
    /// Completion tokens over all choices.
    pub(super) completion_tokens: u64,
    /// Whether prompt tokens written to the cache are billed as writes
    /// (Anthropic's explicit breakpoints) or as plain input (OpenAI's
    /// automatic caching).
    pub(super) bill_cache_writes: bool,
}

impl<'a, P: IntoIterator<Item = Piece<'a>>> Conversation<'a, P> {
    /// Looks the conversation's prefixes up in the cache (and stores
    /// them): the work of serving it, and what the cache held.
    pub(super) fn work(self, shared: &Shared) -> (Work, CacheOutcome) {
        let boundaries = piece_prefixes(&shared.options().prefix_cache, self.scope, self.pieces);
        let outcome = shared.cache_lookup(&boundaries);
        let work = Work {
            prompts: 1,
            sequences: vec![Sequence {
                prompt_tokens: self.prompt_tokens,
                cached_tokens: outcome.read_tokens,
                decode_tokens: self.decode_tokens,
            }],
            completion_tokens: self.completion_tokens,
            cache_write_tokens: if self.bill_cache_writes {
                outcome.written_tokens
            } else {
                0
            },
        };
        (work, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_user_message_is_answered_else_the_last() {
        let roles = |r: &[&'static str]| answered(r.iter().copied());
        assert_eq!(roles(&["system", "user", "assistant", "user"]), 3);
        assert_eq!(roles(&["user", "assistant"]), 0);
        assert_eq!(roles(&["system"]), 0);
        assert_eq!(roles(&[]), 0);
    }

    #[test]
    fn messages_are_required() {
        assert!(require_messages(Some(vec![1]), "x").is_ok());
        assert!(require_messages::<u8>(Some(vec![]), "x").is_err());
        assert!(require_messages::<u8>(None, "x").is_err());
    }
}
