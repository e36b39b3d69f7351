//! The end-to-end tests' own helpers. The harness itself (a [`Stack`] of
//! real `sluice` processes on free ports, against the real RabbitMQ, Redis
//! and PostgreSQL, under its own prefix and database, all of it removed
//! when the stack is dropped) is `sluice-testkit`, shared with the
//! benchmarks; here are what only tests use: a [`Client`] per tenant and a
//! webhook [`receiver`].
//!
//! The tests spawn `target/debug/sluice` and `target/debug/sluice-bench`
//! (built by `scripts/test.sh`), or the binaries `SLUICE_BIN` and
//! `SLUICE_BENCH_BIN` name. Set `TEST_LOG=1` to see the roles' logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod client;
mod config;
pub mod receiver;

use std::process::Stdio;
use std::time::Duration;

pub use client::{is_terminal, Client, Response};
pub use config::{backup_route, Price, ODD_PRICE};
pub use sluice_testkit::{
    amqp_url, embedder_path, redis_url, sluice_binary as binary, wordnet_path, Completions,
    Embedder, Role, Stack, StackOptions, TEST_WEBHOOKS_TOML,
};

/// What the tests do with a stack beyond what the testkit does.
pub trait StackExt {
    /// Creates a tenant and a key for it; a client with that key.
    fn tenant(&self, name: &str) -> impl std::future::Future<Output = Client>;
    /// Starts another API replica; a client of it with `key`.
    fn another_api(&self, key: &str) -> impl std::future::Future<Output = (Role, Client)>;
}

impl StackExt for Stack {
    async fn tenant(&self, name: &str) -> Client {
        Client::new(&self.api_url(), &self.key(name).await)
    }

    async fn another_api(&self, key: &str) -> (Role, Client) {
        let role = self.api_replica().await;
        let client = Client::new(&role.addr.clone().expect("api address"), key);
        (role, client)
    }
}

/// Starts a stack with `options`, and a tenant `acme` on it; a client with
/// its key.
pub async fn acme_stack(options: StackOptions) -> (Stack, Client) {
    let stack = Stack::start(options).await;
    let client = stack.tenant("acme").await;
    (stack, client)
}

/// Runs `sluice-bench KIND ARGS…` to its end (at most 4 minutes), as a
/// user would, with its own stack on the real services.
pub async fn run_bench(kind: &str, args: &[&str]) -> std::process::Output {
    let run =
        tokio::process::Command::new(sluice_testkit::binary("sluice-bench", "SLUICE_BENCH_BIN"))
            .arg(kind)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("sluice-bench {kind} finishes within 4 minutes"))
        .unwrap_or_else(|e| panic!("sluice-bench {kind} starts: {e}"))
}

/// The keys of the real Redis that match `pattern` (a `SCAN` pattern),
/// and a client to act on them (quit it when done).
pub async fn redis_keys(pattern: &str) -> (fred::prelude::Client, Vec<fred::types::Key>) {
    use fred::prelude::*;
    use fred::types::scan::Scanner;
    use futures::StreamExt;
    let client = Builder::from_config(Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let mut keys = Vec::new();
    let mut scan = client.scan(pattern, Some(500), None);
    while let Some(page) = scan.next().await {
        let mut page = page.unwrap();
        keys.extend(page.take_results().unwrap_or_default());
        page.next();
    }
    (client, keys)
}

/// A Python tool from PyPI the tests run: the path in `env` (which
/// `scripts/test.sh` sets), else `program` in the virtualenv
/// `scripts/pyvenv.sh NAME SPEC` makes (or finds). A missing tool fails
/// the test, saying how to get it.
pub fn python_tool(env: &str, name: &str, spec: &str, program: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return std::path::PathBuf::from(path);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pyvenv.sh");
    let out = std::process::Command::new(&script)
        .args([name, spec])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{name} is needed: run `scripts/pyvenv.sh {name} '{spec}'` (or set {env}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(program)
}
