//! A whole Sluice stack for one test: its own prefix, database and config.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;

use crate::client::Client;
use crate::process::{binary, Role};

pub struct StackOptions {
    /// Workers to start with the stack.
    pub workers: usize,
    /// Whether to start the API.
    pub api: bool,
    /// Extra flags for `sluice mock-llm` (latency).
    pub mock_args: Vec<String>,
    /// The config's `[worker]` table (short batch waits by default).
    pub worker_toml: String,
    /// Lines added to the config's `[api]` table.
    pub api_toml: String,
    /// Lines added to the mock provider's `[[providers]]` table.
    pub provider_toml: String,
    /// Top-level TOML added to the config (`[[prices]]`, more providers);
    /// `{backup_url}` in it becomes the backup mock's base URL.
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

/// The delay queues a `[webhooks]` table makes (to delete them after).
fn webhook_delays(webhooks_toml: &str) -> Vec<u64> {
    let config = format!("[webhooks]\n{webhooks_toml}\n");
    sluice_core::config::Config::parse(&config, "webhooks")
        .map(|c| c.webhooks.delays_ms())
        .unwrap_or_default()
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
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

pub struct Stack {
    pub prefix: String,
    pub database: String,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub config_path: PathBuf,
    pub mock: Role,
    pub backup: Option<Role>,
    pub api: Option<Role>,
    pub workers: Vec<Role>,
    pub webhooks: Option<Role>,
    webhook_delays: Vec<u64>,
    http: reqwest::Client,
}

pub fn amqp_url() -> String {
    std::env::var("SLUICE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn pg_admin_url() -> String {
    std::env::var("SLUICE_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn pg_url(database: &str) -> String {
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{database}")
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let prefix = format!("e2e-{unique}");
        let database = format!("sluice_e2e_{unique}");
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");

        let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL at SLUICE_TEST_PG_ADMIN_URL or 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let env = vec![
            ("SLUICE_AMQP_URL".to_owned(), amqp_url()),
            ("SLUICE_REDIS_URL".to_owned(), redis_url()),
            ("SLUICE_DATABASE_URL".to_owned(), pg_url(&database)),
            ("SLUICE_PREFIX".to_owned(), prefix.clone()),
        ];

        let mut mock_args = vec!["mock-llm", "--listen", "127.0.0.1:0"];
        mock_args.extend(options.mock_args.iter().map(String::as_str));
        let mock = Role::start("mock-llm", &mock_args, &env, "listening on", &dir).await;
        let mock_url = mock.addr.clone().expect("mock address");
        let backup = match &options.backup_mock {
            Some(args) => {
                let mut backup_args = vec!["mock-llm", "--listen", "127.0.0.1:0"];
                backup_args.extend(args.iter().map(String::as_str));
                Some(Role::start("backup-mock", &backup_args, &env, "listening on", &dir).await)
            }
            None => None,
        };
        let backup_url = backup
            .as_ref()
            .and_then(|b| b.addr.clone())
            .unwrap_or_default();
        let extra_toml = options.extra_toml.replace("{backup_url}", &backup_url);

        let config_path = dir.join("sluice.toml");
        std::fs::write(
            &config_path,
            format!(
                r#"
[[providers]]
name = "mock"
kind = "openai"
base_url = "{mock_url}/v1"
{provider_toml}

[[models]]
name = "mock-small"
providers = ["mock"]

[[models]]
name = "mock-embed"
providers = ["mock"]

[worker]
{}

[api]
{}

[webhooks]
{}

{}
"#,
                options.worker_toml,
                options.api_toml,
                options.webhooks_toml,
                extra_toml,
                provider_toml = options.provider_toml
            ),
        )
        .expect("write config");

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
            webhook_delays: webhook_delays(&options.webhooks_toml),
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

    /// Starts the webhooks role (its metrics address is its `addr`).
    pub async fn start_webhooks(&mut self) {
        let config = self.config_arg();
        let args = [
            "webhooks",
            "--config",
            &config,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let role = Role::start("webhooks", &args, &self.env, "metrics on", &self.dir).await;
        self.webhooks = Some(role);
    }

    /// The webhooks role's metrics, as text.
    pub async fn webhook_metrics(&self) -> String {
        let addr = self
            .webhooks
            .as_ref()
            .and_then(|w| w.addr.clone())
            .expect("the webhooks role is running");
        self.http
            .get(format!("{addr}/metrics"))
            .send()
            .await
            .expect("webhook metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Runs `sluice <args>` to completion; its stdout, or a panic with stderr.
    pub async fn sluice(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(binary())
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .await
            .expect("run sluice");
        assert!(
            out.status.success(),
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn config_arg(&self) -> String {
        self.config_path.display().to_string()
    }

    pub async fn start_api(&mut self) {
        let config = self.config_arg();
        let args = ["api", "--listen", "127.0.0.1:0", "--config", &config];
        self.api = Some(Role::start("api", &args, &self.env, "listening on", &self.dir).await);
    }

    pub async fn start_worker(&mut self) {
        let config = self.config_arg();
        let args = [
            "worker",
            "--config",
            &config,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let role = Role::start("worker", &args, &self.env, "metrics on", &self.dir).await;
        self.workers.push(role);
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

    /// Creates a tenant and a key for it; a client with that key.
    pub async fn tenant(&self, name: &str) -> Client {
        self.sluice(&["admin", "tenant", "create", name]).await;
        let out = self
            .sluice(&["admin", "key", "create", "--tenant", name])
            .await;
        let key = out.lines().last().expect("key line").trim().to_owned();
        Client::new(&self.api_url(), &key)
    }

    /// The mock provider's own bill.
    pub async fn mock_bill(&self) -> Value {
        self.http
            .get(format!("{}/mock/bill", self.mock_url()))
            .send()
            .await
            .expect("mock bill")
            .json()
            .await
            .expect("bill json")
    }

    /// What the mock provider served so far.
    pub async fn mock_stats(&self) -> Value {
        self.http
            .get(format!("{}/mock/stats", self.mock_url()))
            .send()
            .await
            .expect("mock stats")
            .json()
            .await
            .expect("stats json")
    }

    pub fn database_url(&self) -> String {
        pg_url(&self.database)
    }
}

/// Removes everything the stack made: its queues and exchanges, its Redis
/// keys, its database and its temp dir.
async fn clean_up(prefix: String, database: String, dir: PathBuf, delays: Vec<u64>) {
    let topology = sluice_queue::Topology::new(prefix.clone(), 5).with_webhook_delays(delays);
    if let Err(e) = sluice_queue::amqp::teardown(&amqp_url(), &topology).await {
        eprintln!("cleanup: queues of {prefix}: {e}");
    }
    match sluice_store::jobs::RedisJobStore::connect(sluice_store::jobs::RedisOptions {
        url: redis_url(),
        prefix: prefix.clone(),
        retention: Duration::from_secs(60),
        pool_size: 1,
    })
    .await
    {
        Ok(store) => {
            let _ = store.delete_all().await;
            store.close().await;
        }
        Err(e) => eprintln!("cleanup: redis keys of {prefix}: {e}"),
    }
    if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let drop = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
            eprintln!("cleanup: database {database}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Stop the roles first (kill_on_drop), then clean up on a runtime of
        // our own: Drop cannot await, and may run inside the test's runtime.
        self.api = None;
        self.workers.clear();
        self.webhooks = None;
        self.backup = None;
        let (prefix, database, dir) =
            (self.prefix.clone(), self.database.clone(), self.dir.clone());
        let delays = self.webhook_delays.clone();
        let cleaner = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(clean_up(prefix, database, dir, delays));
            }
        });
        let _ = cleaner.join();
    }
}

/// Counts, per job id, the completion notices Sluice publishes: one per
/// state change to an end. A job that ended twice would count 2.
pub struct CompletionCounter {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    subscriber: fred::clients::SubscriberClient,
    task: tokio::task::JoinHandle<()>,
}

impl CompletionCounter {
    pub async fn start(prefix: &str) -> Self {
        use fred::prelude::*;
        let config = Config::from_url(&redis_url()).expect("redis url");
        let subscriber = Builder::from_config(config)
            .with_performance_config(|p| p.broadcast_channel_capacity = 65_536)
            .build_subscriber_client()
            .expect("subscriber");
        subscriber.init().await.expect("redis");
        let mut messages = subscriber.message_rx();
        subscriber
            .subscribe(format!("{prefix}:done"))
            .await
            .expect("subscribe");
        let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let sink = std::sync::Arc::clone(&counts);
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(async move {
            while let Ok(message) = messages.recv().await {
                if let Some(id) = message.value.as_string() {
                    *sink.lock().unwrap().entry(id).or_insert(0) += 1;
                }
            }
        });
        Self {
            counts,
            subscriber,
            task,
        }
    }

    pub fn counts(&self) -> std::collections::HashMap<String, u32> {
        self.counts.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        use fred::prelude::*;
        let _ = self.subscriber.quit().await;
        self.task.abort();
    }
}

impl Stack {
    /// Starts another API replica; a client of it with `key`.
    pub async fn another_api(&mut self, key: &str) -> (Role, Client) {
        let config = self.config_arg();
        let args = ["api", "--listen", "127.0.0.1:0", "--config", &config];
        let role = Role::start("api", &args, &self.env, "listening on", &self.dir).await;
        let client = Client::new(&role.addr.clone().expect("api address"), key);
        (role, client)
    }
}
