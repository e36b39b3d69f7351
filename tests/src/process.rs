//! A role running as a child process of the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `sluice` binary under test.
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/sluice
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("sluice"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin sluice` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Runs `sluice bench KIND ARGS…` to its end (at most 4 minutes), as a
/// user would, with its own stack on the real services.
pub async fn run_bench(kind: &str, args: &[&str]) -> std::process::Output {
    let run = Command::new(binary())
        .args(["bench", kind])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("bench {kind} finishes within 4 minutes"))
        .unwrap_or_else(|e| panic!("bench {kind} starts: {e}"))
}

pub struct Role {
    pub name: String,
    child: Child,
    /// The address the role printed (`… on http://ADDR`), if it serves HTTP.
    pub addr: Option<String>,
}

impl Role {
    /// Starts `sluice <args>` with `env`, and waits until it prints a line
    /// containing `ready_marker`; the URL on that line becomes `addr`.
    /// Its stderr goes to `<log_dir>/<name>-<n>.log` (or the test's stderr
    /// with `TEST_LOG`), and a failure to start shows that log's tail.
    pub async fn start(
        name: &str,
        args: &[&str],
        env: &[(String, String)],
        ready_marker: &str,
        log_dir: &std::path::Path,
    ) -> Role {
        let log_path = (0..)
            .map(|n| log_dir.join(format!("{name}-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(binary());
        // The log filter: the test's own (in `env`), else SLUICE_LOG, else info.
        let filter = std::env::var("SLUICE_LOG")
            .unwrap_or_else(|_| "info,lapin=warn,fred=warn,sqlx=warn".into());
        command
            .args(args)
            .env("SLUICE_LOG", filter)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::from(log)
            })
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let wait_ready = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.contains(ready_marker) {
                    return line;
                }
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{name} exited before printing {ready_marker:?}; its log ends:\n{}",
                tail.join("\n")
            );
        };
        let line = tokio::time::timeout(Duration::from_secs(30), wait_ready)
            .await
            .unwrap_or_else(|_| panic!("{name} did not become ready in 30 s"));
        // Keep draining stdout so the child never blocks on a full pipe.
        let drain = async move { while let Ok(Some(_)) = lines.next_line().await {} };
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(drain);
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches(',').to_owned());
        Role {
            name: name.to_owned(),
            child,
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running child")
    }

    /// SIGKILL: the process dies at once, holding whatever it held.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait for a clean exit; returns its exit status.
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {within:?} of SIGTERM", self.name))
            .expect("wait for child")
    }
}
