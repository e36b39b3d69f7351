//! Command-line arguments. Connections come from flags or the environment
//! (`SLUICE_AMQP_URL`, `SLUICE_REDIS_URL`, `SLUICE_DATABASE_URL`,
//! `SLUICE_PREFIX`); providers and routes from the TOML config.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Queued, batched, metered LLM inference."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Connections {
    /// RabbitMQ.
    #[arg(
        long,
        env = "SLUICE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Redis.
    #[arg(
        long,
        env = "SLUICE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// PostgreSQL.
    #[arg(
        long,
        env = "SLUICE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sluice"
    )]
    pub database_url: String,
    /// Names every queue, exchange and Redis key, so that stacks sharing a
    /// broker and a Redis do not see each other's jobs.
    #[arg(long, env = "SLUICE_PREFIX", default_value = "sluice")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// The TOML file with providers and model routes.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The HTTP API.
    Api {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        conn: Connections,
    },
    /// A worker: consumes, batches, calls providers, stores results.
    Worker {
        /// Where to serve /metrics, /healthz and /readyz.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        conn: Connections,
    },
    /// The simulated OpenAI-compatible provider.
    MockLlm(MockArgs),
    /// Applies the database migrations.
    Migrate {
        #[command(flatten)]
        conn: Connections,
    },
    /// Tenants and keys.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        conn: Connections,
    },
    /// Every role in one process, on in-memory queue and store, with the
    /// mock provider: no services needed.
    Dev {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Args, Debug, Clone)]
pub struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Fixed latency of every call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_fixed_ms: u64,
    /// Prefill latency per prompt token, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_per_prompt_token_us: u64,
    /// Decode latency per generated token, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_per_completion_token_us: u64,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Creates a tenant.
    Create { name: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Creates a key; prints it as the last line. It is never shown again.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Throughput of the full stack against the broker's raw ceiling.
    Throughput(crate::roles::bench::ThroughputArgs),
}
