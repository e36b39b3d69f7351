//! A whole Sluice stack: its own prefix, database, config and roles.

use std::path::PathBuf;

use serde_json::Value;

use crate::completions::Completions;
use crate::role::Role;
use crate::services::{Database, Services};

pub struct StackOptions {
    /// Names the stack: prefix `LABEL-ULID`, database `sluice_LABEL_ULID`.
    pub label: &'static str,
    pub services: Services,
    /// The roles' log filter (`SLUICE_LOG`); by default the caller's
    /// `SLUICE_LOG`, else info.
    pub log: Option<String>,
    /// Workers to start with the stack.
    pub workers: usize,
    /// Whether to start the API.
    pub api: bool,
    /// Extra flags for `sluice mock-llm` (latency).
    pub mock_args: Vec<String>,
    /// The config's `[worker]` table (short batch waits by default; the
    /// table is left out when empty).
    pub worker_toml: String,
    /// Lines of the config's `[api]` table.
    pub api_toml: String,
    /// Lines added to the mock provider's `[[providers]]` table.
    pub provider_toml: String,
    /// Top-level TOML added to the config (`[[prices]]`, more providers and
    /// models, tables left out above); `{backup_url}` in it becomes the
    /// backup mock's address.
    pub extra_toml: String,
    /// Flags of a second mock provider (a backup), when one is wanted.
    pub backup_mock: Option<Vec<String>>,
    /// Whether to start the webhooks role.
    pub webhooks: bool,
    /// The config's `[webhooks]` table: by default a compressed schedule
    /// (0, 0.3, 0.3, 0.3 s), a short timeout, and loopback allowed.
    pub webhooks_toml: String,
}

/// The `[webhooks]` table tests run with unless they say otherwise.
pub const TEST_WEBHOOKS_TOML: &str =
    "schedule_s = [0, 0.3, 0.3, 0.3]\nattempt_timeout_s = 2\nallow = [\"127.0.0.0/8\"]";

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            label: "e2e",
            services: Services::from_env(),
            log: None,
            workers: 1,
            api: true,
            mock_args: Vec::new(),
            worker_toml: "max_wait_ms = { interactive = 5, standard = 20, batch = 50 }".into(),
            api_toml: String::new(),
            provider_toml: String::new(),
            extra_toml: String::new(),
            backup_mock: None,
            webhooks: false,
            webhooks_toml: TEST_WEBHOOKS_TOML.into(),
        }
    }
}

impl StackOptions {
    /// The config file: the mock as provider `mock` of the models
    /// `mock-small` and `mock-embed`, the tables given, then `extra_toml`.
    fn config(&self, mock_url: &str, backup_url: &str) -> String {
        let mut config = format!(
            "[[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"{mock_url}/v1\"\n{}\n\n\
             [[models]]\nname = \"mock-small\"\nproviders = [\"mock\"]\n\n\
             [[models]]\nname = \"mock-embed\"\nproviders = [\"mock\"]\n\n",
            self.provider_toml
        );
        for (table, lines) in [
            ("worker", &self.worker_toml),
            ("api", &self.api_toml),
            ("webhooks", &self.webhooks_toml),
        ] {
            if !lines.is_empty() {
                config.push_str(&format!("[{table}]\n{lines}\n\n"));
            }
        }
        config.push_str(&self.extra_toml.replace("{backup_url}", backup_url));
        config.push('\n');
        config
    }

    /// The delay queues its `[webhooks]` table makes (to delete them after).
    fn webhook_delays(&self) -> Vec<u64> {
        let config = format!("[webhooks]\n{}\n", self.webhooks_toml);
        sluice_core::config::Config::parse(&config, "webhooks")
            .map(|c| c.webhooks.delays_ms())
            .unwrap_or_default()
    }
}

pub struct Stack {
    pub prefix: String,
    pub database: Database,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub config_path: PathBuf,
    pub mock: Role,
    pub backup: Option<Role>,
    pub api: Option<Role>,
    pub workers: Vec<Role>,
    pub webhooks: Option<Role>,
    services: Services,
    webhook_delays: Vec<u64>,
    http: reqwest::Client,
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let prefix = format!("{}-{unique}", options.label);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let services = options.services.clone();
        let database =
            Database::create(&services, &format!("sluice_{}_{unique}", options.label)).await;
        let mut env = vec![
            ("SLUICE_AMQP_URL".to_owned(), services.amqp_url.clone()),
            ("SLUICE_REDIS_URL".to_owned(), services.redis_url.clone()),
            ("SLUICE_DATABASE_URL".to_owned(), database.url.clone()),
            ("SLUICE_PREFIX".to_owned(), prefix.clone()),
        ];
        env.extend(
            options
                .log
                .iter()
                .map(|l| ("SLUICE_LOG".to_owned(), l.clone())),
        );

        let mock = start_mock("mock-llm", &options.mock_args, &env, &dir).await;
        let backup = match &options.backup_mock {
            Some(args) => Some(start_mock("backup-mock", args, &env, &dir).await),
            None => None,
        };
        let address = |role: Option<&Role>| role.and_then(|r| r.addr.clone()).unwrap_or_default();
        let config = options.config(&address(Some(&mock)), &address(backup.as_ref()));
        let config_path = dir.join("sluice.toml");
        std::fs::write(&config_path, config).expect("write config");

        let mut stack = Stack {
            prefix,
            database,
            dir,
            env,
            config_path,
            mock,
            backup,
            api: None,
            workers: Vec::new(),
            webhooks: None,
            services,
            webhook_delays: options.webhook_delays(),
            http: reqwest::Client::new(),
        };
        let migrated = stack.sluice(&["migrate"]).await;
        assert!(migrated.contains("migrated"), "{migrated}");
        if options.api {
            stack.start_api().await;
        }
        for _ in 0..options.workers {
            stack.start_worker().await;
        }
        if options.webhooks {
            stack.start_webhooks().await;
        }
        stack
    }

    /// Runs `sluice <args>` to completion; its stdout, or a panic with stderr.
    pub async fn sluice(&self, args: &[&str]) -> String {
        let out = self.run_sluice(args).await;
        assert!(
            out.status.success(),
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sluice <args>`, which must fail (a non-zero exit); its stderr.
    pub async fn sluice_fails(&self, args: &[&str]) -> String {
        let out = self.run_sluice(args).await;
        assert!(
            !out.status.success(),
            "sluice {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs `sluice <args>` with its stdout a pipe closed before it
    /// writes (as `sluice … | head -0` leaves it), to its end.
    pub async fn sluice_into_closed_pipe(&self, args: &[&str]) -> std::process::Output {
        let mut child = tokio::process::Command::new(crate::sluice_binary())
            .args(args)
            .envs(self.env.iter().cloned())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sluice {args:?}: {e}"));
        drop(child.stdout.take());
        child
            .wait_with_output()
            .await
            .unwrap_or_else(|e| panic!("cannot wait for sluice {args:?}: {e}"))
    }

    /// Runs `sluice <args>` with the stack's environment, to its end.
    async fn run_sluice(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(crate::sluice_binary())
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run sluice {args:?}: {e}"))
    }

    pub fn config_arg(&self) -> String {
        self.config_path.display().to_string()
    }

    async fn role(&self, name: &str, args: &[&str], ready: &str) -> Role {
        Role::start(name, args, &self.env, ready, &self.dir).await
    }

    /// Starts an API replica (the stack's own is `api`).
    pub async fn api_replica(&self) -> Role {
        let config = self.config_arg();
        let args = ["api", "--listen", "127.0.0.1:0", "--config", &config];
        self.role("api", &args, "listening on").await
    }

    pub async fn start_api(&mut self) {
        self.api = Some(self.api_replica().await);
    }

    /// Starts `role` (a worker or the webhooks role) serving its metrics,
    /// at its `addr`.
    async fn with_metrics(&self, role: &str) -> Role {
        let config = self.config_arg();
        let args = [role, "--config", &config, "--metrics-listen", "127.0.0.1:0"];
        self.role(role, &args, "metrics on").await
    }

    /// Starts a worker (its metrics address is its `addr`).
    pub async fn start_worker(&mut self) {
        let worker = self.with_metrics("worker").await;
        self.workers.push(worker);
    }

    /// Starts the webhooks role (its metrics address is its `addr`).
    pub async fn start_webhooks(&mut self) {
        self.webhooks = Some(self.with_metrics("webhooks").await);
    }

    pub fn api_url(&self) -> String {
        self.api
            .as_ref()
            .and_then(|a| a.addr.clone())
            .expect("the API is running")
    }

    pub fn mock_url(&self) -> String {
        self.mock.addr.clone().expect("mock address")
    }

    pub fn backup_url(&self) -> String {
        self.backup
            .as_ref()
            .and_then(|b| b.addr.clone())
            .expect("the backup mock is running")
    }

    pub fn database_url(&self) -> String {
        self.database.url.clone()
    }

    /// Creates a tenant and a key for it (with `sluice admin`); the key.
    pub async fn key(&self, tenant: &str) -> String {
        self.sluice(&["admin", "tenant", "create", tenant]).await;
        let out = self
            .sluice(&["admin", "key", "create", "--tenant", tenant])
            .await;
        out.lines().last().expect("key line").trim().to_owned()
    }

    /// `GET url` as JSON.
    pub async fn get_json(&self, url: &str) -> Value {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }

    /// The mock provider's own bill.
    pub async fn mock_bill(&self) -> Value {
        self.get_json(&format!("{}/mock/bill", self.mock_url()))
            .await
    }

    /// The backup mock's own bill.
    pub async fn backup_bill(&self) -> Value {
        self.get_json(&format!("{}/mock/bill", self.backup_url()))
            .await
    }

    /// What the mock provider served so far.
    pub async fn mock_stats(&self) -> Value {
        self.get_json(&format!("{}/mock/stats", self.mock_url()))
            .await
    }

    /// The webhooks role's metrics, as text.
    pub async fn webhook_metrics(&self) -> String {
        self.metrics_of(
            self.webhooks
                .as_ref()
                .expect("the webhooks role is running"),
        )
        .await
    }

    /// Worker `i`'s metrics, as text.
    pub async fn worker_metrics(&self, i: usize) -> String {
        self.metrics_of(&self.workers[i]).await
    }

    async fn metrics_of(&self, role: &Role) -> String {
        let addr = role.addr.as_ref().expect("the role serves HTTP");
        let r = self.http.get(format!("{addr}/metrics")).send().await;
        r.expect("metrics").text().await.expect("metrics text")
    }

    /// Starts counting the job ends announced under the stack's prefix.
    pub async fn completions(&self) -> Completions {
        Completions::start(&self.services.redis_url, &self.prefix).await
    }

    /// Every role's log that is not empty (roles stopped since
    /// included), by log name (`worker-0`), in name order.
    pub fn logs(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut logs: Vec<(String, String)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                let name = p.file_stem()?.to_string_lossy().into_owned();
                (!text.trim().is_empty()).then_some((name, text))
            })
            .collect();
        logs.sort();
        logs
    }
}

async fn start_mock(
    name: &str,
    flags: &[String],
    env: &[(String, String)],
    dir: &std::path::Path,
) -> Role {
    let mut args = vec!["mock-llm", "--listen", "127.0.0.1:0"];
    args.extend(flags.iter().map(String::as_str));
    Role::start(name, &args, env, "listening on", dir).await
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Stop the roles first (kill_on_drop), then remove what the prefix
        // made; the database goes when its field is dropped, after this.
        self.api = None;
        self.workers.clear();
        self.webhooks = None;
        self.backup = None;
        let (services, prefix) = (self.services.clone(), self.prefix.clone());
        let delays = self.webhook_delays.clone();
        crate::block_on_own_thread(async move { services.remove_prefix(&prefix, delays).await });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
