//! Command-line arguments. Connections come from flags or the environment
//! (`SLUICE_AMQP_URL`, `SLUICE_REDIS_URL`, `SLUICE_DATABASE_URL`,
//! `SLUICE_PREFIX`); providers and routes from the TOML config.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod overrides;

pub use overrides::Overrides;

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
    #[command(flatten)]
    pub services: sluice_core::services::Services,
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
    /// Delivers job ends to webhooks: signed, retried, every attempt recorded.
    Webhooks {
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
}

/// `sluice mock-llm`. Settings come from the defaults, then `--config`,
/// then the flags given; a flag left out keeps the file's value.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = "\
Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings (with
service_tier \"flex\": slower, sometimes refused, at the flex price),
/v1/messages (Anthropic; needs an anthropic-version header); the Batch APIs:
/v1/files and /v1/batches (OpenAI), /v1/messages/batches (Anthropic);
GET /v1/organization/costs; GET /mock/stats, GET /mock/bill, GET
/mock/received, POST /mock/reset, POST /mock/admin/down, POST
/mock/admin/up, GET /healthz.

Latency = (fixed + prefill + max completion tokens × per-completion-token)
× (1 ± jitter) + stall, where prefill is per-prompt-token × uncached tokens
plus per-cached-prompt-token × cached tokens, summed over an array call's
prompts and blended with their max by --batch-efficiency.

Cost of one request, in integer micro-dollars, rounded half up once:
(uncached × INPUT + cached × CACHED_INPUT + 1.25 × cache-written × INPUT
+ completion × OUTPUT) / 1 000 000. Cache writes happen only on /v1/messages
(cache_control); 429s and injected errors are never billed. Flex requests
and batch lines are billed at their tier's price (default: half, rounded up).
GET /mock/bill has the totals, by model and by tier.

Prefix cache: chat caches the messages before the last user message;
completions caches whole blocks of --prefix-cache-block-tokens of the prompt;
/v1/messages caches up to each block marked cache_control. Keys include the
model and prompt_cache_key.")]
pub struct MockArgs {
    /// Where to serve.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// A TOML file with the mock's settings; flags given override it. Keys:
    /// seed, default_max_tokens, embedding_dims, api_key, max_concurrency;
    /// [latency] fixed_ms, per_prompt_token_us, per_cached_prompt_token_us,
    /// per_completion_token_us, jitter, batch_efficiency; [prefix_cache]
    /// enabled, block_tokens, max_entries, ttl_secs; [rate_limits]
    /// requests_per_minute, tokens_per_minute, window_ms; [faults] error_rate,
    /// stall_rate, stall_ms; [prices.default] and [prices.models."NAME"]
    /// input, cached_input, output.
    #[arg(long, env = "SLUICE_MOCK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: Overrides<sluice_mock::MockOptions>,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Usage and cost from the ledger, across tenants or for one.
    Usage(UsageArgs),
    /// Compares what the ledger charged for one provider's calls on a day
    /// with what the provider says it billed (its Costs API), by model.
    Reconcile(ReconcileArgs),
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Webhook signing secrets and endpoints.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Provider batches, newest first: those not done (with --all, every
    /// one), with their state, remote id, lines and jobs still open. With
    /// --tenant, that tenant's Batch API batches (`/v1/batches`) instead,
    /// with their counts and cost.
    Batches {
        /// Done batches too.
        #[arg(long)]
        all: bool,
        /// A tenant's Batch API batches, newest first.
        #[arg(long, conflicts_with = "all")]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Creates (or rotates) the tenant's signing secret for the URLs its
    /// jobs name; prints it as the last line, once.
    Secret {
        #[arg(long)]
        tenant: String,
        /// Seconds the replaced secret keeps signing.
        #[arg(long, default_value_t = 86_400)]
        overlap_s: u64,
    },
    /// Registers an endpoint; prints its secret as the last line, once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        url: String,
        /// Comma-separated: succeeded, failed, canceled, expired (default: all).
        #[arg(long)]
        events: Option<String>,
    },
    /// Lists the tenant's endpoints.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Deletes an endpoint.
    Delete {
        #[arg(long)]
        tenant: String,
        id: String,
    },
    /// Gives an endpoint a new secret (the last line); the old one signs on
    /// for the overlap.
    Rotate {
        #[arg(long)]
        tenant: String,
        id: String,
        #[arg(long, default_value_t = 86_400)]
        overlap_s: u64,
    },
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// One tenant, by name (default: every tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Comma-separated: model, feature, route, day, provider, tenant, tier.
    #[arg(long, default_value = "")]
    pub group_by: String,
    /// Start (inclusive), RFC 3339 or YYYY-MM-DD; default: this month's start.
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 or YYYY-MM-DD; default: now.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: UsageFormat,
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The provider, by its name in the config.
    #[arg(long)]
    pub provider: String,
    /// The UTC day, YYYY-MM-DD; default: today.
    #[arg(long)]
    pub day: Option<String>,
    /// The environment variable holding the key for the provider's Costs
    /// API (OpenAI wants an admin key); default: the provider's `api_key_env`.
    #[arg(long)]
    pub key_env: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum UsageFormat {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Creates a tenant.
    Create { name: String },
    /// Sets (or, without a value, removes) a tenant's monthly spend cap.
    Budget {
        name: String,
        /// The cap in integer micro-dollars ($1 = 1000000).
        #[arg(long)]
        monthly_micros: Option<u64>,
    },
    /// Sets a tenant's rate limits (a limit left out is removed: the
    /// config's default applies).
    Limits {
        name: String,
        /// Jobs per minute, across every API replica.
        #[arg(long)]
        requests_per_minute: Option<u64>,
        /// Estimated tokens (prompt + max_tokens) per minute.
        #[arg(long)]
        tokens_per_minute: Option<u64>,
        /// Estimated prompt tokens in Batch API batches in progress (a
        /// batch over it fails with `token_limit_exceeded`).
        #[arg(long)]
        batch_queue_tokens: Option<u64>,
    },
    /// Sets (or, without a value, removes: 1) a tenant's fair-share
    /// weight: while tenants' jobs wait for a provider, a tenant of weight
    /// 2 is served twice the tokens of one of weight 1.
    Weight {
        name: String,
        /// 1 to 1000.
        #[arg(value_parser = parse_weight)]
        weight: Option<u32>,
    },
}

/// A fair-share weight: 1 up to `UNITS_PER_TOKEN`, the most at which a
/// token still charges the tenant's counter something.
fn parse_weight(text: &str) -> Result<u32, String> {
    let most = sluice_core::fair::UNITS_PER_TOKEN;
    match text.parse::<u32>() {
        Ok(w) if w >= 1 && u64::from(w) <= most => Ok(w),
        _ => Err(format!(
            "a weight is a whole number from 1 to {most}; leave it out to remove it"
        )),
    }
}

/// A cap on a key's jobs in flight: at least 1.
fn parse_max_inflight(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && i32::try_from(n).is_ok() => Ok(n),
        _ => Err(format!(
            "the cap is a whole number from 1 to {}; leave it out to remove it",
            i32::MAX
        )),
    }
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Creates a key; prints it as the last line. It is never shown again.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "default")]
        name: String,
        /// The key stops working this many days from now.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// The priority class of the key's jobs that name none
        /// (interactive, standard or batch).
        #[arg(long)]
        priority: Option<sluice_core::Priority>,
        /// The most jobs of the key in flight at once, across the fleet;
        /// the key's jobs over it wait in the queue.
        #[arg(long, value_parser = parse_max_inflight)]
        max_inflight: Option<u32>,
    },
    /// Sets (or, without a value, removes) the priority class of a key's
    /// jobs that name none.
    Priority {
        id: String,
        /// interactive, standard or batch.
        priority: Option<sluice_core::Priority>,
    },
    /// Sets (or, without a value, removes) the most jobs of a key in
    /// flight at once, across the fleet; its jobs over it wait in the queue.
    MaxInflight {
        id: String,
        #[arg(value_parser = parse_max_inflight)]
        max_inflight: Option<u32>,
    },
    /// Sets (or, without a value, removes) a key's own monthly spend cap.
    Budget {
        id: String,
        /// The cap in integer micro-dollars ($1 = 1000000).
        #[arg(long)]
        monthly_micros: Option<u64>,
    },
    /// Revokes a key by its id; it stops working within seconds everywhere.
    Revoke { id: String },
    /// Lists a tenant's keys (never the keys themselves).
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<AdminCommand, String> {
        let argv = ["sluice", "admin"].iter().chain(args).copied();
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Admin { command, .. } => Ok(command),
            other => panic!("not admin: {other:?}"),
        }
    }

    fn weight(value: &[&str]) -> Result<Option<u32>, String> {
        match parse(&[&["tenant", "weight", "acme"], value].concat())? {
            AdminCommand::Tenant {
                command: TenantCommand::Weight { weight, .. },
            } => Ok(weight),
            other => panic!("not tenant weight: {other:?}"),
        }
    }

    fn max_inflight(value: &[&str]) -> Result<Option<u32>, String> {
        match parse(&[&["key", "max-inflight", "0190"], value].concat())? {
            AdminCommand::Key {
                command: KeyCommand::MaxInflight { max_inflight, .. },
            } => Ok(max_inflight),
            other => panic!("not key max-inflight: {other:?}"),
        }
    }

    #[test]
    fn a_weight_is_1_to_1000_and_left_out_to_remove_it() {
        assert_eq!(weight(&["3"]), Ok(Some(3)));
        assert_eq!(weight(&["1000"]), Ok(Some(1000)));
        assert_eq!(weight(&[]), Ok(None));
        // A negative number reads as a flag: clap refuses it on its own.
        assert!(weight(&["-1"]).is_err());
        for bad in ["0", "1001", "two", "1.5"] {
            let why = weight(&[bad]).unwrap_err();
            assert!(why.contains("from 1 to 1000"), "{bad}: {why}");
        }
    }

    #[test]
    fn a_keys_cap_is_at_least_1_and_left_out_to_remove_it() {
        assert_eq!(max_inflight(&["100"]), Ok(Some(100)));
        assert_eq!(max_inflight(&[]), Ok(None));
        assert!(max_inflight(&["-5"]).is_err());
        for bad in ["0", "many", "4294967295"] {
            let why = max_inflight(&[bad]).unwrap_err();
            assert!(why.contains("from 1 to"), "{bad}: {why}");
        }
        let created = parse(&["key", "create", "--tenant", "acme", "--max-inflight", "100"]);
        assert!(
            matches!(
                created,
                Ok(AdminCommand::Key {
                    command: KeyCommand::Create {
                        max_inflight: Some(100),
                        ..
                    }
                })
            ),
            "{created:?}"
        );
        assert!(parse(&["key", "create", "--tenant", "acme", "--max-inflight", "0"]).is_err());
    }
}
