//! A role of the `sluice` binary running as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::task::TaskTracker;

use crate::binary::sluice_binary;

/// How long a role may take to print its ready marker.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The log filter of a role whose caller sets none: `SLUICE_LOG`, else this.
const DEFAULT_LOG: &str = "info,lapin=warn,fred=warn,sqlx=warn";

pub struct Role {
    pub name: String,
    child: Child,
    /// The address the role printed (`… on http://ADDR`), if it serves HTTP.
    pub addr: Option<String>,
    /// Where its stderr goes (none with `TEST_LOG`: the caller's stderr).
    pub log: Option<PathBuf>,
    /// Reads the rest of its stdout, so that it never blocks on a full pipe.
    drain: TaskTracker,
}

/// The last `n` lines of the file at `path` (empty if it cannot be read).
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Role {
    /// Starts `sluice <args>` with `env`, and waits until it prints a line
    /// containing `ready_marker`; the URL on that line becomes `addr`.
    /// Its stderr goes to `<log_dir>/<name>-<n>.log` (or the caller's
    /// stderr with `TEST_LOG`), and a failure to start shows that log's
    /// tail. The log filter is `SLUICE_LOG` from `env`, else the caller's
    /// `SLUICE_LOG`, else info.
    pub async fn start(
        name: &str,
        args: &[&str],
        env: &[(String, String)],
        ready_marker: &str,
        log_dir: &Path,
    ) -> Role {
        let log_path = (0..)
            .map(|n| log_dir.join(format!("{name}-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let log = std::env::var_os("TEST_LOG").is_none().then_some(log_path);
        let stderr = match &log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display())),
            ),
            None => Stdio::inherit(),
        };
        let filter = std::env::var("SLUICE_LOG").unwrap_or_else(|_| DEFAULT_LOG.into());
        let mut command = Command::new(sluice_binary());
        if log.is_some() {
            // A log file is read as text: no colour codes in it.
            command.env("NO_COLOR", "1");
        }
        let mut child = command
            .args(args)
            .env("SLUICE_LOG", filter)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let wait_ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(ready_marker) {
                    return line;
                }
            }
            let tail = log.as_deref().map(|p| tail(p, 20)).unwrap_or_default();
            panic!("{name} exited before printing {ready_marker:?}; its log ends:\n{tail}");
        };
        let line = tokio::time::timeout(READY_WITHIN, wait_ready)
            .await
            .unwrap_or_else(|_| panic!("{name} did not become ready in {READY_WITHIN:?}"));
        let drain = TaskTracker::new();
        drain.spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        drain.close();
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches(',').to_owned());
        Role {
            name: name.to_owned(),
            child,
            addr,
            log,
            drain,
        }
    }

    /// Its process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn pid(&self) -> u32 {
        self.id().expect("running child")
    }

    /// SIGKILL: the process dies at once, holding whatever it held.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        self.drain.wait().await;
    }

    /// SIGTERM, then waits up to `within` for it to exit; its exit status,
    /// or `None` if it had to be killed.
    pub async fn stop(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let status = tokio::time::timeout(within, self.child.wait()).await;
        let status = match status {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        self.drain.wait().await;
        status
    }

    /// SIGTERM, then waits for a clean exit; its exit status. Panics if it
    /// does not exit within `within`.
    pub async fn terminate(self, within: Duration) -> std::process::ExitStatus {
        let name = self.name.clone();
        self.stop(within)
            .await
            .unwrap_or_else(|| panic!("{name} did not exit within {within:?} of SIGTERM"))
    }
}
