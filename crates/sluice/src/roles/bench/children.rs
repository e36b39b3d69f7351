//! The stack under test, as child processes of this binary, under a prefix
//! and a database of their own.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use sluice_store::tenants::{self, PgTenantStore, TenantStore};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::task::TaskTracker;

use crate::cli::Connections;

pub struct Proc {
    pub child: Child,
    pub addr: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A mock provider of the stack: the provider entry `provider` (with the
/// extra `provider_toml` lines) serving the model route `model`.
pub struct MockSpec<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub args: Vec<String>,
    pub provider_toml: String,
}

impl MockSpec<'static> {
    /// The mock with `mock_args` as provider `mock` of the model
    /// `mock-small`, its provider entry with `provider_toml` lines.
    pub fn default_mock(mock_args: &[&str], provider_toml: &str) -> Self {
        Self {
            provider: "mock",
            model: "mock-small",
            args: mock_args.iter().map(|a| (*a).to_owned()).collect(),
            provider_toml: provider_toml.to_owned(),
        }
    }
}

pub struct BenchStack {
    pub prefix: String,
    pub api_url: String,
    /// Every mock's URL, in the order given (at least one).
    pub mock_urls: Vec<String>,
    pub key: String,
    /// The bench tenant's store (to change its limits mid-run).
    pub tenants: PgTenantStore,
    conn: Connections,
    database: String,
    admin_url: String,
    dir: std::path::PathBuf,
    env: Vec<(String, String)>,
    procs: Vec<Proc>,
    pub workers: Vec<Proc>,
    drains: TaskTracker,
}

fn swap_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url).context("SLUICE_DATABASE_URL")?;
    u.set_path(&format!("/{database}"));
    Ok(u.to_string())
}

impl BenchStack {
    /// The first mock's URL.
    pub fn mock_url(&self) -> &str {
        self.mock_urls.first().map_or("", String::as_str)
    }

    /// Starts the stack: the mock with `mock_args` as provider `mock` of the
    /// model `mock-small`, the provider entry with `provider_toml` lines,
    /// the API and `workers` workers.
    pub async fn start(
        conn: &Connections,
        workers: usize,
        mock_args: &[&str],
        provider_toml: &str,
    ) -> anyhow::Result<Self> {
        let mock = MockSpec::default_mock(mock_args, provider_toml);
        Self::start_with(conn, workers, &[mock], "").await
    }

    /// Starts the stack with these mocks, `config_toml` appended to the
    /// generated configuration, the API and `workers` workers.
    pub async fn start_with(
        conn: &Connections,
        workers: usize,
        mocks: &[MockSpec<'_>],
        config_toml: &str,
    ) -> anyhow::Result<Self> {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let prefix = format!("bench-{unique}");
        let database = format!("sluice_bench_{unique}");
        let admin_url = swap_database(&conn.database_url, "postgres")?;
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .context("PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut admin)
            .await?;
        let database_url = swap_database(&conn.database_url, &database)?;
        let pool = tenants::connect(&database_url).await?;
        tenants::migrate(&pool).await?;
        let store = PgTenantStore::new(pool);
        store.create_tenant("bench").await?;
        let key = store.create_key("bench", "bench").await?.key;

        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let env = vec![
            ("SLUICE_AMQP_URL".to_owned(), conn.amqp_url.clone()),
            ("SLUICE_REDIS_URL".to_owned(), conn.redis_url.clone()),
            ("SLUICE_DATABASE_URL".to_owned(), database_url),
            ("SLUICE_PREFIX".to_owned(), prefix.clone()),
            ("SLUICE_LOG".to_owned(), "warn".to_owned()),
        ];
        let mut stack = Self {
            prefix,
            api_url: String::new(),
            mock_urls: Vec::new(),
            key,
            tenants: store,
            conn: conn.clone(),
            database,
            admin_url,
            dir,
            env,
            procs: Vec::new(),
            workers: Vec::new(),
            drains: TaskTracker::new(),
        };
        let (mut providers, mut models) = (String::new(), String::new());
        for spec in mocks {
            let mut args = vec!["mock-llm", "--listen", "127.0.0.1:0"];
            args.extend(spec.args.iter().map(String::as_str));
            let mock = stack.spawn(&args, "listening on").await?;
            let url = mock.addr.clone().context("mock address")?;
            stack.procs.push(mock);
            providers.push_str(&format!(
                "[[providers]]\nname = \"{}\"\nkind = \"openai\"\nbase_url = \"{url}/v1\"\n{}\n\n",
                spec.provider, spec.provider_toml
            ));
            models.push_str(&format!(
                "[[models]]\nname = \"{}\"\nproviders = [\"{}\"]\n\n",
                spec.model, spec.provider
            ));
            stack.mock_urls.push(url);
        }
        anyhow::ensure!(!stack.mock_urls.is_empty(), "a bench stack needs a mock");
        std::fs::write(
            stack.config_path(),
            format!("{providers}{models}{config_toml}\n"),
        )?;
        let config = stack.config_path().display().to_string();
        let api = stack
            .spawn(
                &["api", "--listen", "127.0.0.1:0", "--config", &config],
                "listening on",
            )
            .await?;
        stack.api_url = api.addr.clone().context("api address")?;
        stack.procs.push(api);
        for _ in 0..workers {
            stack.start_worker().await?;
        }
        Ok(stack)
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("sluice.toml")
    }

    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        let config = self.config_path().display().to_string();
        let worker = self
            .spawn(&["worker", "--config", &config], "consuming")
            .await?;
        self.workers.push(worker);
        Ok(())
    }

    /// The stack's own processes by role (`mock`, `api`, `worker`) and this
    /// one (`bench`, the load generator), for the CPU split.
    pub fn roles(&self) -> Vec<(&'static str, u32)> {
        let last = self.procs.len().saturating_sub(1);
        let own = self.procs.iter().enumerate().map(|(i, p)| {
            let role = if i == last { "api" } else { "mock" };
            (role, p.pid())
        });
        let workers = self.workers.iter().map(|w| ("worker", w.pid()));
        own.chain(workers)
            .filter_map(|(role, pid)| pid.map(|pid| (role, pid)))
            .chain([("bench", std::process::id())])
            .collect()
    }

    /// Stops the workers (SIGTERM, drained).
    pub async fn stop_workers(&mut self) {
        for mut w in self.workers.drain(..) {
            terminate(&mut w.child).await;
        }
    }

    async fn spawn(&self, args: &[&str], ready: &str) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(ready) {
                    return Ok(line);
                }
            }
            anyhow::bail!("sluice {args:?} exited before it was ready")
        })
        .await
        .with_context(|| format!("sluice {args:?} was not ready in 30 s"))??;
        self.drains
            .spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned);
        Ok(Proc { child, addr })
    }

    /// Stops every child and removes the queues, keys and database.
    pub async fn stop(mut self) {
        self.stop_workers().await;
        for mut p in self.procs.drain(..).rev() {
            terminate(&mut p.child).await;
        }
        self.drains.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.drains.wait()).await;
        let topology = sluice_queue::Topology::new(self.prefix.clone(), 5);
        if let Err(e) = sluice_queue::amqp::teardown(&self.conn.amqp_url, &topology).await {
            eprintln!("bench: cannot delete queues of {}: {e}", self.prefix);
        }
        let options = sluice_store::jobs::RedisOptions {
            url: self.conn.redis_url.clone(),
            prefix: self.prefix.clone(),
            retention: Duration::from_secs(60),
            pool_size: 1,
        };
        if let Ok(store) = sluice_store::jobs::RedisJobStore::connect(options).await {
            let _ = store.delete_all().await;
            store.close().await;
        }
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
            let _ = sqlx::query(&drop).execute(&mut admin).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Resident and peak resident memory of a process, in KiB, from /proc.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
