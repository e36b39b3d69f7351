//! Repeated provider calls: what a provider billed for a job beyond the
//! call whose answer the job kept.
//!
//! A worker that dies while its provider call is in flight leaves a call
//! the provider completes and bills, but whose answer nobody receives. The
//! job's message is redelivered and the job is called again. The first
//! call is an *orphaned attempt*: real money with no answer.
//!
//! The record of an attempt is the job's own record: the start script
//! counts each attempt (`attempts`) when it marks the job running, and the
//! attempt is marked *sent* (`sent`) just before its provider call leaves,
//! once its budget and a connection slot are taken (one write for every
//! call leaving at that moment, not one per job). What the call sends
//! (model, prompt, `max_tokens`) is the job's message, which the broker
//! keeps until the ack. The attempt that ends the job closes the sent
//! attempts before it: those never answered (see [`orphaned`]) become
//! ledger rows of their own, priced by [`orphan_usage`].
//!
//! Within an attempt, a call its worker gave up on after the request
//! reached the provider (a client-side timeout, a connection or stream
//! broken midway) and made again is unanswered money too: it is charged
//! by the same rule, a row per call keyed by the attempt and the call's
//! number within it (`ledger::Repeat::Abandoned`).

use serde::{Deserialize, Serialize};

use crate::pricing::Price;
use crate::Usage;

/// How an orphaned attempt's usage was estimated. Its prompt tokens are
/// exact either way (the same request's count); its completion is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimate {
    /// The job was answered by a later attempt of the same request: the
    /// orphan is taken to have used what that answer used (prompt tokens as
    /// the provider counted them, uncached; its completion tokens).
    AnsweredAttempt,
    /// No attempt was answered: the prompt as Sluice counts it, and the
    /// completion at the request's `max_tokens` (the most it could bill).
    MaxTokens,
}

impl Estimate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredAttempt => "answered_attempt",
            Self::MaxTokens => "max_tokens",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "answered_attempt" => Some(Self::AnsweredAttempt),
            "max_tokens" => Some(Self::MaxTokens),
            _ => None,
        }
    }
}

/// The attempts of a job whose call left and was never answered: those
/// `sent` but the one whose answer ended the job (`answered`; `None` when
/// no provider answer ended it, as for a job canceled while it ran) and
/// those `known` (recorded by their own worker).
pub fn orphaned(sent: &[u32], answered: Option<u32>, known: &[u32]) -> Vec<u32> {
    sent.iter()
        .copied()
        .filter(|a| Some(*a) != answered && !known.contains(a))
        .collect()
}

/// What an orphaned attempt is charged: its usage, the exact part of its
/// cost (its prompt tokens, at the uncached input price: the orphan was
/// the first to send its prompt) and the estimated part (its completion),
/// in µ$. `answer` is the usage of the attempt that answered the same
/// request, if one did; otherwise `prompt_tokens` (Sluice's count) and
/// `max_tokens` stand in. Without a price, both parts are 0.
pub fn orphan_usage(
    answer: Option<&Usage>,
    prompt_tokens: u64,
    max_tokens: u64,
    price: Option<&Price>,
) -> Orphan {
    let (usage, estimate) = match answer {
        Some(a) => (
            Usage::new(a.prompt_tokens, a.completion_tokens, 0),
            Estimate::AnsweredAttempt,
        ),
        None => (
            Usage::new(prompt_tokens, max_tokens, 0),
            Estimate::MaxTokens,
        ),
    };
    let (exact_micros, estimated_micros) = match price {
        Some(p) => {
            let exact = p.call_cost(&Usage::new(usage.prompt_tokens, 0, 0));
            (exact, p.call_cost(&usage).saturating_sub(exact))
        }
        None => (0, 0),
    };
    Orphan {
        usage,
        exact_micros,
        estimated_micros,
        estimate,
    }
}

/// An orphaned attempt's charge (see [`orphan_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub usage: Usage,
    /// The part of the cost that is exact (its prompt).
    pub exact_micros: u64,
    /// The part that is estimated (its completion).
    pub estimated_micros: u64,
    pub estimate: Estimate,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Price = Price {
        input: 1_000_000,
        cached_input: 100_000,
        output: 4_000_000,
        cache_write: None,
    };

    #[test]
    fn every_attempt_but_the_answered_one_is_orphaned() {
        assert_eq!(orphaned(&[1], Some(1), &[]), Vec::<u32>::new());
        assert_eq!(orphaned(&[1, 2, 3], Some(3), &[]), vec![1, 2]);
        // Attempt 2 never left (its worker died before the call).
        assert_eq!(orphaned(&[1, 3], Some(3), &[]), vec![1]);
        // Canceled while it ran: no answer ended it; attempt 2's own
        // worker recorded it.
        assert_eq!(orphaned(&[1, 2], None, &[2]), vec![1]);
        assert_eq!(orphaned(&[], None, &[]), Vec::<u32>::new());
    }

    #[test]
    fn an_orphan_costs_the_answered_request_uncached_with_its_completion_estimated() {
        // The answer read 40 of its 100 prompt tokens from the provider's
        // cache, which the orphan had warmed: the orphan paid for all 100.
        let answered = Usage::new(100, 20, 40);
        let o = orphan_usage(Some(&answered), 7, 500, Some(&PRICE));
        assert_eq!(o.estimate, Estimate::AnsweredAttempt);
        assert_eq!(o.usage, Usage::new(100, 20, 0));
        assert_eq!(o.exact_micros, 100);
        assert_eq!(o.estimated_micros, 80);
        assert_eq!(
            o.exact_micros + o.estimated_micros,
            PRICE.call_cost(&o.usage)
        );
    }

    #[test]
    fn without_an_answer_the_completion_is_charged_at_max_tokens() {
        let o = orphan_usage(None, 30, 16, Some(&PRICE));
        assert_eq!(o.estimate, Estimate::MaxTokens);
        assert_eq!(o.usage, Usage::new(30, 16, 0));
        assert_eq!((o.exact_micros, o.estimated_micros), (30, 64));
        let unpriced = orphan_usage(None, 30, 16, None);
        assert_eq!((unpriced.exact_micros, unpriced.estimated_micros), (0, 0));
        assert_eq!(Estimate::parse(o.estimate.as_str()), Some(o.estimate));
    }
}
