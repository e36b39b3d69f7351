//! The state every handler shares: the options and the live counters.

use std::sync::Arc;

use crate::options::MockOptions;
use crate::stats::StatsRecorder;

/// Cheap to clone; all clones see the same counters.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: MockOptions,
    stats: StatsRecorder,
}

/// What serving one request costs, for the counters and the latency model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    /// Prompts in the request.
    pub(crate) prompts: u64,
    /// Prompt tokens over all prompts (as reported in `usage`).
    pub(crate) prompt_tokens: u64,
    /// Completion tokens over all choices (as reported in `usage`).
    pub(crate) completion_tokens: u64,
    /// Completion tokens of the longest single sequence: what decode waits for.
    pub(crate) decode_tokens: u64,
}

impl Shared {
    pub(crate) fn new(options: MockOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                stats: StatsRecorder::default(),
            }),
        }
    }

    pub(crate) fn options(&self) -> &MockOptions {
        &self.inner.options
    }

    pub(crate) fn stats(&self) -> &StatsRecorder {
        &self.inner.stats
    }

    /// Counts the request, then waits as long as the latency model says.
    ///
    /// The request is counted before the wait, as a provider bills a
    /// request it has accepted even when the client hangs up before the
    /// answer arrives.
    pub(crate) async fn serve(&self, path: &str, work: Work) {
        self.stats().record(
            path,
            work.prompts,
            work.prompt_tokens,
            work.completion_tokens,
        );
        let delay = self
            .options()
            .latency(work.prompt_tokens, work.decode_tokens);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}
