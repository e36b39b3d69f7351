//! Where the services are: RabbitMQ, Redis and PostgreSQL. One definition
//! of the flags, the environment variables and the defaults that every
//! binary (`sluice`, `sluice-bench`) and the test kit read them from.

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/sluice";

/// The services' URLs (with the `cli` feature, as command-line flags that
/// fall back on `SLUICE_AMQP_URL`, `SLUICE_REDIS_URL` and
/// `SLUICE_DATABASE_URL`, then on the local services).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Services {
    /// RabbitMQ: one URL, or the nodes of one cluster separated by commas
    /// (a role connects to the first that answers, and on a lost
    /// connection to the next).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SLUICE_AMQP_URL", default_value = DEFAULT_AMQP_URL)
    )]
    pub amqp_url: String,
    /// Redis.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SLUICE_REDIS_URL", default_value = DEFAULT_REDIS_URL)
    )]
    pub redis_url: String,
    /// PostgreSQL.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SLUICE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)
    )]
    pub database_url: String,
}
