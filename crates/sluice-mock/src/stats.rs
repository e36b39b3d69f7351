//! What the mock has served: requests, prompts and tokens, in total and per
//! endpoint. Benchmarks and tests read these as the provider's side of the
//! story (how many calls the queue really made, how many tokens it billed).
//! The errors served instead of answers (429s, injected 5xx, 503s while
//! down) and the stalls are counted apart; they are not requests served.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::bill::Refusal;

/// The counters kept for one endpoint.
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
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MockStats {
    pub requests: u64,
    pub prompts: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The same counters per request path, e.g. `/v1/chat/completions`.
    pub by_endpoint: BTreeMap<String, EndpointStats>,
    /// 429s served.
    #[serde(default)]
    pub rate_limited: u64,
    /// Injected 500s and 503s served.
    #[serde(default)]
    pub injected_errors: u64,
    /// 503s served while down.
    #[serde(default)]
    pub down_rejections: u64,
    /// Served requests that stalled (they count as served as well).
    #[serde(default)]
    pub stalls: u64,
}

impl MockStats {
    /// The counters of one path, zero if it was never called.
    pub fn endpoint(&self, path: &str) -> EndpointStats {
        self.by_endpoint.get(path).cloned().unwrap_or_default()
    }

    fn record(&mut self, path: &str, served: &EndpointStats) {
        self.requests = self.requests.saturating_add(served.requests);
        self.prompts = self.prompts.saturating_add(served.prompts);
        self.prompt_tokens = self.prompt_tokens.saturating_add(served.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(served.completion_tokens);
        self.by_endpoint
            .entry(path.to_owned())
            .or_default()
            .add(served);
    }
}

/// The live counters, shared by every handler.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    inner: Mutex<MockStats>,
}

impl StatsRecorder {
    /// Counts one served request on `path`.
    pub(crate) fn record(
        &self,
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
        self.lock().record(path, &served);
    }

    /// Counts an error served instead of an answer.
    pub(crate) fn refused(&self, refusal: Refusal) {
        let mut stats = self.lock();
        let counter = match refusal {
            Refusal::RateLimited => &mut stats.rate_limited,
            Refusal::Injected => &mut stats.injected_errors,
            Refusal::Down => &mut stats.down_rejections,
        };
        *counter = counter.saturating_add(1);
    }

    pub(crate) fn stalled(&self) {
        let mut stats = self.lock();
        stats.stalls = stats.stalls.saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> MockStats {
        self.lock().clone()
    }

    pub(crate) fn reset(&self) {
        *self.lock() = MockStats::default();
    }

    // The counters stay consistent even if a holder panicked (each update
    // is a handful of additions), so a poisoned lock is simply taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, MockStats> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_totals_and_per_endpoint() {
        let rec = StatsRecorder::default();
        rec.record("/a", 3, 30, 48);
        rec.record("/a", 1, 5, 16);
        rec.record("/b", 2, 8, 0);
        let s = rec.snapshot();
        assert_eq!(
            (s.requests, s.prompts, s.prompt_tokens, s.completion_tokens),
            (3, 6, 43, 64)
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
        rec.refused(Refusal::RateLimited);
        rec.refused(Refusal::Injected);
        rec.refused(Refusal::Down);
        rec.stalled();
        let s = rec.snapshot();
        assert_eq!(
            (
                s.rate_limited,
                s.injected_errors,
                s.down_rejections,
                s.stalls
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(s.requests, 3);
        rec.reset();
        assert_eq!(rec.snapshot(), MockStats::default());
    }
}
