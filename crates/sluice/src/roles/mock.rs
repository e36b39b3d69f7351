//! `sluice mock-llm`: the simulated provider.

use anyhow::Context;
use sluice_mock::config::{
    FaultConfig, LatencyConfig, PrefixCacheConfig, PriceConfig, RateLimitConfig,
};
use sluice_mock::{MockConfig, MockOptions, MockServer};

use crate::cli::MockArgs;
use crate::runtime::{say, shutdown_signal};

/// The options: the defaults, then the `--config` file, then the flags.
pub fn options(args: &MockArgs) -> anyhow::Result<MockOptions> {
    let mut options = MockOptions::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the mock config {}", path.display()))?;
        MockConfig::from_toml(&text)
            .and_then(|config| config.apply(&mut options))
            .with_context(|| format!("bad mock config {}", path.display()))?;
    }
    flags(args)
        .apply(&mut options)
        .context("bad mock-llm flags")?;
    Ok(options)
}

/// The flags given, as a config layer.
fn flags(args: &MockArgs) -> MockConfig {
    let mut prices = PriceConfig::default();
    for (model, price) in &args.prices {
        if model == "default" {
            prices.default = Some(*price);
        } else {
            prices.models.insert(model.clone(), *price);
        }
    }
    MockConfig {
        seed: args.seed,
        default_max_tokens: args.default_max_tokens,
        embedding_dims: args.embedding_dims,
        api_key: args.api_key.clone(),
        max_concurrency: args.max_concurrency,
        latency: LatencyConfig {
            fixed_ms: args.latency_fixed_ms,
            per_prompt_token_us: args.latency_per_prompt_token_us,
            per_cached_prompt_token_us: args.latency_per_cached_prompt_token_us,
            per_completion_token_us: args.latency_per_completion_token_us,
            jitter: args.latency_jitter,
            batch_efficiency: args.batch_efficiency,
        },
        prefix_cache: PrefixCacheConfig {
            enabled: args.prefix_cache,
            block_tokens: args.prefix_cache_block_tokens,
            max_entries: args.prefix_cache_max_entries,
            ttl_secs: args.prefix_cache_ttl_secs,
        },
        rate_limits: RateLimitConfig {
            requests_per_minute: args.requests_per_minute,
            tokens_per_minute: args.tokens_per_minute,
            window_ms: args.rate_window_ms,
        },
        faults: FaultConfig {
            error_rate: args.error_rate,
            stall_rate: args.stall_rate,
            stall_ms: args.stall_ms,
        },
        prices,
    }
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let options = options(&args)?;
    let socket = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    say(&format!(
        "sluice mock-llm listening on http://{}",
        socket.local_addr()?
    ));
    let shutdown = shutdown_signal();
    MockServer::new(options)
        .serve(socket, async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use sluice_mock::{Price, Ratio};

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> MockArgs {
        let argv = ["sluice", "mock-llm"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::MockLlm(args) => args,
            other => panic!("not mock-llm: {other:?}"),
        }
    }

    #[test]
    fn no_flags_keep_the_defaults() {
        assert_eq!(options(&parse(&[])).unwrap(), MockOptions::default());
    }

    #[test]
    fn flags_set_the_new_options() {
        let args = parse(&[
            "--latency-fixed-ms=50",
            "--latency-jitter=0.2",
            "--batch-efficiency=0.5",
            "--prefix-cache",
            "--prefix-cache-ttl-secs=30",
            "--requests-per-minute=10",
            "--error-rate=0.05",
            "--stall-rate=0.01",
            "--stall-ms=90000",
            "--price=big=3:2:1",
            "--price=default=4:5:6",
        ]);
        let o = options(&args).unwrap();
        assert_eq!(o.latency_fixed, Duration::from_millis(50));
        assert_eq!(o.latency_jitter, Ratio::percent(20));
        assert_eq!(o.batch_efficiency, Ratio::percent(50));
        assert!(o.prefix_cache.enabled);
        assert_eq!(o.prefix_cache.ttl, Duration::from_secs(30));
        assert_eq!(o.rate_limits.requests_per_minute, Some(10));
        assert_eq!(o.faults.error_rate, Ratio::percent(5));
        assert_eq!(o.faults.stall, Duration::from_secs(90));
        let price = |input, cached_input, output| Price {
            input,
            cached_input,
            output,
        };
        assert_eq!(o.prices.price("big"), &price(3, 2, 1));
        assert_eq!(o.prices.price("other"), &price(4, 5, 6));
        assert!(Cli::try_parse_from(["sluice", "mock-llm", "--latency-jitter=2"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "mock-llm", "--price=big"]).is_err());
    }

    #[test]
    fn flags_override_the_config_file() {
        let path = std::env::temp_dir().join(format!("sluice-mock-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "seed = 7\n[latency]\nfixed_ms = 5\nper_prompt_token_us = 3\n",
        )
        .unwrap();
        let o = options(&parse(&[
            "--config",
            path.to_str().unwrap(),
            "--latency-fixed-ms=9",
        ]))
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(o.seed, 7);
        assert_eq!(o.latency_fixed, Duration::from_millis(9));
        assert_eq!(o.latency_per_prompt_token, Duration::from_micros(3));
        assert!(options(&parse(&["--config", "/nonexistent/mock.toml"])).is_err());
    }
}
