//! What the mock has served: requests, prompts and tokens, in total and per
//! endpoint. Benchmarks and tests read these as the provider's side of the
//! story (how many calls the queue really made, how many tokens it billed).
//! The errors served instead of answers (429s, injected 5xx, 503s while
//! down) and the stalls are counted apart; they are not requests served.
//! Provider batches are counted apart too ([`BatchStats`]): their lines
//! are not requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bill::Refusals;

/// The counters kept for one endpoint, and for all of them together.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// HTTP requests answered.
    pub requests: u64,
    /// Prompts in those requests: 1 per chat request, the array length for
    /// an array `prompt` or `input`.
    pub prompts: u64,
    /// Prompt tokens, as reported in `usage`.
    pub prompt_tokens: u64,
    /// Completion tokens, as reported in `usage`.
    pub completion_tokens: u64,
}

impl EndpointStats {
    fn add(&mut self, served: &EndpointStats) {
        self.requests = self.requests.saturating_add(served.requests);
        self.prompts = self.prompts.saturating_add(served.prompts);
        self.prompt_tokens = self.prompt_tokens.saturating_add(served.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(served.completion_tokens);
    }
}

/// A snapshot of everything the mock has served since it started or was
/// last reset. Only valid requests count; a request rejected with 400 or
/// 401 is not served and leaves the counters alone.
///
/// In JSON, the totals and the refusals are fields of the object itself:
/// `{"requests", "prompts", …, "by_endpoint", "rate_limited", …}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Every endpoint together.
    #[serde(flatten)]
    pub total: EndpointStats,
    /// The same counters per request path, e.g. `/v1/chat/completions`.
    pub by_endpoint: BTreeMap<String, EndpointStats>,
    /// The errors served instead of answers.
    #[serde(flatten)]
    pub refusals: Refusals,
    /// Served requests that stalled (they count as served as well).
    #[serde(default)]
    pub stalls: u64,
    /// The provider batches (OpenAI and Anthropic) and their lines.
    #[serde(default)]
    pub batches: BatchStats,
}

/// The provider batches held (since start or reset), by status, and
/// their lines by outcome.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct BatchStats {
    /// Batches by status, with OpenAI's names for both dialects:
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`,
    /// `expired`, `cancelling`, `cancelled`.
    pub by_status: BTreeMap<String, u64>,
    pub lines: LineStats,
}

impl BatchStats {
    /// Batches with `status`, zero if none.
    pub fn status(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// The lines of every batch held, by what became of them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct LineStats {
    pub total: u64,
    /// Not answered yet.
    pub pending: u64,
    /// Answered 200 (and billed).
    pub succeeded: u64,
    /// Answered with an error (a 400 of the route, an injected 500).
    pub failed: u64,
    /// Never ran: the batch was cancelled first.
    pub cancelled: u64,
    /// Never ran: the batch expired first.
    pub expired: u64,
}

impl LineStats {
    pub(crate) fn add(&mut self, counts: &crate::batches::batch::Counts) {
        self.total += counts.total;
        self.pending += counts.pending;
        self.succeeded += counts.succeeded;
        self.failed += counts.failed;
        self.cancelled += counts.cancelled;
        self.expired += counts.expired;
    }
}

impl MockStats {
    /// The counters of one path, zero if it was never called.
    pub fn endpoint(&self, path: &str) -> EndpointStats {
        self.by_endpoint.get(path).cloned().unwrap_or_default()
    }

    /// Counts one served request on `path`.
    pub(crate) fn record(
        &mut self,
        path: &str,
        prompts: u64,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) {
        let served = EndpointStats {
            requests: 1,
            prompts,
            prompt_tokens,
            completion_tokens,
        };
        self.total.add(&served);
        self.by_endpoint
            .entry(path.to_owned())
            .or_default()
            .add(&served);
    }

    pub(crate) fn stalled(&mut self) {
        self.stalls = self.stalls.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::Refusal;

    #[test]
    fn records_totals_and_per_endpoint() {
        let mut s = MockStats::default();
        s.record("/a", 3, 30, 48);
        s.record("/a", 1, 5, 16);
        s.record("/b", 2, 8, 0);
        assert_eq!(
            s.total,
            EndpointStats {
                requests: 3,
                prompts: 6,
                prompt_tokens: 43,
                completion_tokens: 64
            }
        );
        assert_eq!(
            s.endpoint("/a"),
            EndpointStats {
                requests: 2,
                prompts: 4,
                prompt_tokens: 35,
                completion_tokens: 64
            }
        );
        assert_eq!(s.endpoint("/b").prompts, 2);
        assert_eq!(s.endpoint("/never"), EndpointStats::default());
        s.refusals.count(Refusal::RateLimited);
        s.stalled();
        assert_eq!((s.refusals.rate_limited, s.stalls), (1, 1));
        assert_eq!(s.total.requests, 3);
    }

    #[test]
    fn json_keeps_the_totals_and_refusals_at_the_top() {
        let mut s = MockStats::default();
        s.record("/a", 3, 30, 48);
        s.refusals.count(Refusal::Down);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["requests"], 1);
        assert_eq!(json["completion_tokens"], 48);
        assert_eq!(json["down_rejections"], 1);
        assert_eq!(json["by_endpoint"]["/a"]["prompts"], 3);
        assert_eq!(serde_json::from_value::<MockStats>(json).unwrap(), s);
    }
}
