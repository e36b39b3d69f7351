//! Command-line arguments: a subcommand per benchmark, and where the
//! services are (flags or the environment, as for `sluice`).

use clap::{Parser, Subcommand};
use sluice_testkit::Services;

/// Sluice's benchmarks: each starts its own stack of `sluice` roles on the
/// real services.
#[derive(Parser, Debug)]
#[command(name = "sluice-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Throughput of the full stack against the broker's raw ceiling.
    Throughput(crate::throughput::ThroughputArgs),
    /// A burst far above a provider's rate limit: goodput and 429s.
    Limits(crate::limits::LimitsArgs),
    /// Usage reports over a large generated ledger.
    Ledger(crate::ledger::LedgerArgs),
    /// A workload of repeated requests: hit rate, provider calls, hit latency.
    Cache(crate::cache::CacheArgs),
    /// Webhook deliveries per second with the role on one thread, and the
    /// delay from a job's end to its delivery.
    Webhooks(crate::webhooks::WebhooksArgs),
    /// Direct calls against Sluice (with and without its cache, and in
    /// front of a self-hosted server): cost per 1k requests, latency, and
    /// the most users served within an SLO.
    Econ(crate::econ::EconArgs),
    /// Long-polls held at once: the API's memory per held connection, and
    /// how fast they are all answered once a worker starts.
    Held(crate::held::HeldArgs),
    /// What the queue adds to an OpenAI-compatible call: chat completions
    /// through Sluice against straight to an instant mock, at a few
    /// connection counts.
    Compat(crate::compat::CompatArgs),
    /// The Batch API at OpenAI's input limits: a file of chat requests
    /// (some repeated) uploaded, run to completed; times, the API's peak
    /// memory, and the cost against sending each line directly.
    Batch(crate::batch::BatchArgs),
    /// One tenant floods, another sends one job at a time: the other's
    /// times alone, beside the flood with fair share, and first come first
    /// served; how busy the provider stays.
    Fairness(crate::fairness::FairnessArgs),
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Throughput(args) => crate::throughput::run(args).await,
        Command::Limits(args) => crate::limits::run(args).await,
        Command::Ledger(args) => crate::ledger::run(args).await,
        Command::Cache(args) => crate::cache::run(args).await,
        Command::Webhooks(args) => crate::webhooks::run(args).await,
        Command::Econ(args) => crate::econ::run(args).await,
        Command::Held(args) => crate::held::run(args).await,
        Command::Compat(args) => crate::compat::run(args).await,
        Command::Batch(args) => crate::batch::run(args).await,
        Command::Fairness(args) => crate::fairness::run(args).await,
    }
}

/// The services every bench runs against: `sluice`'s flags, its
/// environment and its defaults (a bench makes a database of its own on
/// the PostgreSQL server named).
pub use sluice_core::services::Services as Connections;

/// The test kit's view of them.
pub fn services(conn: &Connections) -> Services {
    Services {
        amqp_url: conn.amqp_url.clone(),
        redis_url: conn.redis_url.clone(),
        postgres_url: conn.database_url.clone(),
    }
}
