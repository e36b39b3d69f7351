//! `sluice mock-llm`: the simulated provider.

use anyhow::Context;
use sluice_mock::{MockOptions, MockServer};

use crate::cli::MockArgs;
use crate::runtime::{say, shutdown_signal};

/// The options: the defaults, then the `--config` file, then the flags.
pub fn options(args: &MockArgs) -> anyhow::Result<MockOptions> {
    let base = match &args.config {
        None => MockOptions::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the mock config {}", path.display()))?;
            MockOptions::from_toml(&text)
                .with_context(|| format!("bad mock config {}", path.display()))?
        }
    };
    args.flags.apply(base).context("bad mock-llm flags")
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

    fn price(input: u64, cached_input: u64, output: u64) -> Price {
        Price {
            input,
            cached_input,
            output,
        }
    }

    /// A config file with `text`, removed when dropped.
    struct ConfigFile(std::path::PathBuf);

    impl ConfigFile {
        fn new(name: &str, text: &str) -> Self {
            let file = format!("sluice-mock-{name}-{}.toml", std::process::id());
            let path = std::env::temp_dir().join(file);
            std::fs::write(&path, text).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn no_flags_keep_the_defaults() {
        assert_eq!(options(&parse(&[])).unwrap(), MockOptions::default());
    }

    #[test]
    fn each_flag_sets_what_its_config_key_sets() {
        let flags = options(&parse(&[
            "--seed=3",
            "--default-max-tokens=7",
            "--embedding-dims=8",
            "--api-key=sk-flag",
            "--max-concurrency=4",
            "--latency-fixed-ms=50",
            "--latency-per-prompt-token-us=20",
            "--latency-per-cached-prompt-token-us=2",
            "--latency-per-completion-token-us=700",
            "--latency-jitter=0.2",
            "--batch-efficiency=0.5",
            "--prefix-cache",
            "--prefix-cache-block-tokens=32",
            "--prefix-cache-max-entries=100",
            "--prefix-cache-ttl-secs=30",
            "--requests-per-minute=10",
            "--tokens-per-minute=1000",
            "--rate-window-ms=6000",
            "--error-rate=0.05",
            "--stall-rate=0.01",
            "--stall-ms=90000",
            "--price=big=3:2:1",
            "--price=default=4:5:6",
        ]))
        .unwrap();
        let file = MockOptions::from_toml(
            "seed = 3\ndefault_max_tokens = 7\nembedding_dims = 8\n\
             api_key = \"sk-flag\"\nmax_concurrency = 4\n\
             [latency]\nfixed_ms = 50\nper_prompt_token_us = 20\n\
             per_cached_prompt_token_us = 2\nper_completion_token_us = 700\n\
             jitter = 0.2\nbatch_efficiency = 0.5\n\
             [prefix_cache]\nenabled = true\nblock_tokens = 32\nmax_entries = 100\n\
             ttl_secs = 30\n\
             [rate_limits]\nrequests_per_minute = 10\ntokens_per_minute = 1000\n\
             window_ms = 6000\n\
             [faults]\nerror_rate = 0.05\nstall_rate = 0.01\nstall_ms = 90000\n\
             [prices.default]\ninput = 4\ncached_input = 5\noutput = 6\n\
             [prices.models.big]\ninput = 3\ncached_input = 2\noutput = 1\n",
        )
        .unwrap();
        assert_eq!(flags, file);
        assert_eq!(flags.latency.jitter, Ratio::percent(20));
        assert_eq!(flags.rate_limits.window(), Duration::from_secs(6));
        assert_eq!(flags.faults.stall(), Duration::from_secs(90));
        assert_eq!(flags.prices.price("big"), &price(3, 2, 1));
        assert_eq!(flags.prices.price("other"), &price(4, 5, 6));
        assert!(Cli::try_parse_from(["sluice", "mock-llm", "--latency-jitter=2"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "mock-llm", "--price=big"]).is_err());
    }

    #[test]
    fn flags_override_the_config_file_and_absent_flags_keep_it() {
        let file = ConfigFile::new(
            "layers",
            "seed = 7\ndefault_max_tokens = 5\n\
             [latency]\nfixed_ms = 5\nper_prompt_token_us = 3\n\
             [prefix_cache]\nenabled = true\nblock_tokens = 8\n\
             [prices.models.small]\ninput = 1\ncached_input = 1\noutput = 1\n",
        );
        let o = options(&parse(&[
            "--config",
            file.path(),
            "--latency-fixed-ms=9",
            "--prefix-cache=false",
            "--price=big=3:2:1",
        ]))
        .unwrap();
        assert_eq!(o.seed, 7);
        // A flag left out keeps the file's value, not the flag's default.
        assert_eq!(o.default_max_tokens, 5);
        assert_eq!(o.prefix_cache.block_tokens.get(), 8);
        assert_eq!(o.latency.fixed_ms, 9);
        assert_eq!(o.latency.per_prompt_token_us, 3);
        assert!(!o.prefix_cache.enabled);
        // Prices given by flag join the file's.
        assert_eq!(o.prices.price("small"), &price(1, 1, 1));
        assert_eq!(o.prices.price("big"), &price(3, 2, 1));
        assert_eq!(o.prices.price("other"), &Price::DEFAULT);
    }

    #[test]
    fn a_bad_or_missing_config_file_is_an_error() {
        assert!(options(&parse(&["--config", "/nonexistent/mock.toml"])).is_err());
        let file = ConfigFile::new("bad", "[latency]\nfixed = 5\n");
        let err = options(&parse(&["--config", file.path()])).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `fixed`"),
            "{err:#}"
        );
    }

    #[test]
    fn help_shows_every_flag_once_with_its_help() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let mock = cli.find_subcommand_mut("mock-llm").unwrap();
        let help = mock.render_long_help().to_string();
        for arg in mock.get_arguments() {
            // Clap's own --help is written as `-h, --help`.
            let Some(long) = arg.get_long().filter(|long| *long != "help") else {
                continue;
            };
            let flag = format!("--{long}");
            // Each flag's entry is a line that starts with it.
            let entries = help
                .lines()
                .filter_map(|line| line.trim_start().strip_prefix(flag.as_str()))
                .filter(|rest| rest.is_empty() || rest.starts_with([' ', '[', '<']))
                .count();
            assert_eq!(entries, 1, "{flag} in\n{help}");
            assert!(arg.get_help().is_some(), "{flag} has no help");
        }
    }
}
