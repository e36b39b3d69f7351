//! One module per subcommand.

mod admin;
mod api;
mod background;
mod connect;
mod dev;
mod front;
mod health;
mod metrics_endpoint;
mod mock;
mod reconcile;
mod usage;
mod wait;
mod webhooks;
mod worker;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Api {
            listen,
            config,
            conn,
        } => api::run(listen, config, conn).await,
        Command::Worker {
            metrics_listen,
            config,
            conn,
        } => worker::run(metrics_listen, config, conn).await,
        Command::Webhooks {
            metrics_listen,
            config,
            conn,
        } => webhooks::run(metrics_listen, config, conn).await,
        Command::MockLlm(args) => mock::run(args).await,
        Command::Migrate { conn } => admin::migrate(conn).await,
        Command::Admin { command, conn } => admin::run(command, conn).await,
        Command::Dev { listen } => dev::run(listen).await,
    }
}
