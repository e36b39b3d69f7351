//! A mock LLM provider: a real HTTP server speaking the OpenAI-compatible
//! API, for tests, `sluice dev` and the benchmarks.
//!
//! Its answers are a deterministic function of the prompt
//! ([`answer_text`]), so a test can tell whether each job got its own
//! answer. It models what makes a provider slow: a fixed cost per request,
//! prefill per prompt token and decode per completion token, with native
//! batches (an array `prompt` or `input`) that decode in parallel. It keeps
//! its own counters ([`MockStats`]), the provider's side of every test.
//!
//! - [`options`]: [`MockOptions`], the latency model and defaults.
//! - [`text`]: the deterministic "model": answers, tokenizer, embeddings.
//! - [`stats`]: [`MockStats`], what was served.
//! - `routes`: one module per endpoint; `auth`: the optional API key;
//!   `error`: errors in the OpenAI shape.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /mock/stats`, `POST /mock/reset`,
//! `GET /healthz`.

use std::future::Future;

mod auth;
mod base64;
mod error;
pub mod options;
mod routes;
mod state;
pub mod stats;
pub mod text;

pub use options::MockOptions;
pub use stats::{EndpointStats, MockStats};
pub use text::{answer_text, count_tokens};

use state::Shared;

/// The mock server. Clones share the same counters, so a test can serve
/// one clone and read the stats from another.
#[derive(Clone, Debug)]
pub struct MockServer {
    shared: Shared,
}

impl MockServer {
    pub fn new(options: MockOptions) -> Self {
        Self {
            shared: Shared::new(options),
        }
    }

    /// The options the server was built with.
    pub fn options(&self) -> &MockOptions {
        self.shared.options()
    }

    /// Every route, sharing this server's counters.
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.shared.stats().snapshot()
    }

    /// Zeroes the counters, as `POST /mock/reset` does.
    pub fn reset_stats(&self) {
        self.shared.stats().reset();
    }

    /// Serves on `listener` until `shutdown` completes, then stops
    /// accepting and lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}
