//! A mock LLM provider: a real HTTP server speaking the OpenAI-compatible
//! API and Anthropic's Messages API, for tests, `sluice dev` and the
//! benchmarks.
//!
//! Its answers are a deterministic function of the prompt
//! ([`answer_text`]), so a test can tell whether each job got its own
//! answer. It models what makes a provider slow and expensive: a fixed cost
//! per request, prefill per prompt token and decode per completion token,
//! native batches (an array `prompt` or `input`) that decode in parallel, a
//! prompt-prefix cache that makes repeated prefixes cheaper and faster,
//! rate limits, injected errors and stalls, and a price table. It serves
//! the cheaper tiers too: OpenAI's flex processing ([`flex`]) and the
//! providers' Batch APIs ([`batches`]), at their own prices. It keeps its
//! own counters ([`MockStats`]) and its own bill ([`MockBill`], by model
//! and by tier), the provider's side of every test.
//!
//! - [`options`]: [`MockOptions`], everything configurable, declared once
//!   for the command line, the TOML file and the code.
//! - [`latency`]: the latency model (jitter, batch efficiency, cache).
//! - [`prefix`] and [`cache`]: what a cacheable prefix is, and the store.
//! - [`pricing`]: prices by tier and the exact cost rule; [`bill`]: the
//!   bill.
//! - [`flex`]: `service_tier: "flex"`; [`batches`]: OpenAI Files and
//!   Batches, Anthropic Message Batches, one engine.
//! - [`limits`]: rate limits; [`faults`]: fault injection, seeded by
//!   [`dice`].
//! - [`text`]: the deterministic "model": answers, tokenizer, embeddings.
//! - [`stats`]: [`MockStats`], what was served.
//! - `routes`: one module per endpoint (and what the conversation routes
//!   share), and `stream: true` on chat and completions in OpenAI's
//!   event-stream format, timed by the latency model; `admission`: rate limits and faults per request; `auth`: the
//!   optional API key; `error`: errors in the OpenAI and Anthropic shapes;
//!   `tally`: the lock the counters and the bill are kept behind.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `POST /v1/messages`, `POST|GET /v1/files`,
//! `GET|DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`,
//! `POST|GET /v1/batches`, `GET /v1/batches/{id}`,
//! `POST /v1/batches/{id}/cancel`, `POST|GET /v1/messages/batches`,
//! `GET|DELETE /v1/messages/batches/{id}`,
//! `POST /v1/messages/batches/{id}/cancel`,
//! `GET /v1/messages/batches/{id}/results`,
//! `GET /v1/organization/costs` (the bill per day, as OpenAI's Costs API), `GET /mock/stats`,
//! `GET /mock/bill`, `GET /mock/traces` (the `traceparent`s received),
//! `GET /mock/received` (the last request bodies),
//! `POST /mock/reset`, `POST /mock/admin/down`,
//! `POST /mock/admin/up`, `GET /healthz`. Every billed answer carries its
//! cost in micro-dollars in `x-mock-cost-micros`.

use std::future::Future;

mod admission;
mod auth;
pub mod batches;
pub mod bill;
pub mod cache;
pub mod dice;
mod error;
pub mod faults;
pub mod flex;
pub mod latency;
pub mod limits;
pub mod options;
pub mod prefix;
pub mod pricing;
pub mod ratio;
pub mod received;
mod routes;
mod state;
pub mod stats;
mod tally;
pub mod text;
pub mod traces;

pub use auth::ApiKey;
pub use batches::BatchOptions;
pub use bill::{MockBill, ModelBill, Refusals, TierBill};
pub use cache::PrefixCacheOptions;
pub use faults::Faults;
pub use flex::FlexOptions;
pub use latency::{LatencyParts, Sequence};
pub use limits::RateLimits;
pub use options::{ConfigError, LatencyOptions, MockOptions};
pub use pricing::{ModelPrice, Price, PriceTable, Tier, Usage};
pub use ratio::{Factor, Ratio};
pub use stats::{BatchStats, EndpointStats, LineStats, MockStats};
pub use text::{answer_text, count_tokens};

use state::Shared;

/// The mock server. Clones share the same state (counters, bill, cache,
/// rate-limit windows, down switch), so a test can serve one clone and
/// read the stats from another.
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

    /// Every route, sharing this server's state.
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// A snapshot of the counters, as `GET /mock/stats` returns it (batches
    /// brought up to now first).
    pub fn stats(&self) -> MockStats {
        self.shared.stats_snapshot()
    }

    /// The last requests received on the model routes (bodies up to 64
    /// KiB), oldest first, as `GET /mock/received` returns them.
    pub fn received(&self) -> Vec<received::Received> {
        self.shared.received().snapshot()
    }

    /// A snapshot of the bill, as `GET /mock/bill` returns it (batches
    /// brought up to now first).
    pub fn bill(&self) -> MockBill {
        self.shared.bill_snapshot()
    }

    /// Back to a fresh start, as `POST /mock/reset` does: zeroes the
    /// counters and the bill, empties the prefix cache and the rate-limit
    /// windows, forgets the files and batches, and restarts the numbering
    /// that seeds jitter, faults and batches. The down switch is left as
    /// it is.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The same as [`reset`](Self::reset), under its older name.
    pub fn reset_stats(&self) {
        self.reset();
    }

    /// Takes the mock down (every `/v1` call answers 503) or brings it
    /// back, as `POST /mock/admin/down` and `/mock/admin/up` do.
    pub fn set_down(&self, down: bool) {
        self.shared.set_down(down);
    }

    pub fn is_down(&self) -> bool {
        self.shared.is_down()
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
