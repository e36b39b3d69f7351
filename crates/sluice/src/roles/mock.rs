//! `sluice mock-llm`: the simulated provider.

use std::time::Duration;

use anyhow::Context;
use sluice_mock::{MockOptions, MockServer};

use crate::cli::MockArgs;
use crate::runtime::{say, shutdown_signal};

pub fn options(args: &MockArgs) -> MockOptions {
    MockOptions {
        latency_fixed: Duration::from_millis(args.latency_fixed_ms),
        latency_per_prompt_token: Duration::from_micros(args.latency_per_prompt_token_us),
        latency_per_completion_token: Duration::from_micros(args.latency_per_completion_token_us),
        ..MockOptions::default()
    }
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let socket = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    say(&format!(
        "sluice mock-llm listening on http://{}",
        socket.local_addr()?
    ));
    let shutdown = shutdown_signal();
    MockServer::new(options(&args))
        .serve(socket, async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
