//! The stack a bench measures: the testkit's, named `bench-…`, its roles
//! logging warnings only (each to its own file, shown when the bench
//! ends), Sluice's default batching settings, and a tenant with a key.

use std::time::Duration;

use sluice_testkit::{Stack, StackOptions};

use crate::cli::Connections;
use crate::progress::{self, Size};

/// The tenant every bench submits as.
pub const TENANT: &str = "bench";

/// How long a worker may take to drain when it is stopped.
const WORKER_DRAIN: Duration = Duration::from_secs(30);

/// Options for a bench's stack on these services: no `[worker]` table
/// (the defaults, as deployed), no webhooks role, `workers` workers.
pub fn options(conn: &Connections, workers: usize) -> StackOptions {
    StackOptions {
        label: "bench",
        services: crate::cli::services(conn),
        log: Some("warn".into()),
        workers,
        worker_toml: String::new(),
        webhooks_toml: String::new(),
        ..StackOptions::default()
    }
}

/// Starts a stack with `options`, runs `measure` on it, removes the stack,
/// then prints the figures `measure` made.
pub async fn measure_on(
    options: StackOptions,
    measure: impl AsyncFnOnce(&BenchStack) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let stack = BenchStack::start(options).await;
    let outcome = measure(&stack).await;
    stack.finish();
    crate::say(&outcome?);
    Ok(())
}

pub struct BenchStack {
    pub stack: Stack,
    pub api_url: String,
    /// The key of [`TENANT`].
    pub key: String,
}

impl BenchStack {
    /// Starts the stack and makes the bench's tenant and key.
    pub async fn start(options: StackOptions) -> Self {
        let phase = progress::phase("starting the stack", Size::Unknown);
        let stack = Stack::start(options).await;
        let key = stack.key(TENANT).await;
        let api_url = stack.api_url();
        phase.done();
        Self {
            stack,
            api_url,
            key,
        }
    }

    /// Submits one job envelope (`POST /v1/jobs`) with the bench's key: the
    /// answer, a 200 (a cache hit) or a 202, unread.
    pub async fn post_job(
        &self,
        http: &reqwest::Client,
        job: &serde_json::Value,
    ) -> reqwest::Result<reqwest::Response> {
        http.post(format!("{}/v1/jobs", self.api_url))
            .bearer_auth(&self.key)
            .json(job)
            .send()
            .await
    }

    /// Submits `jobs` (job envelopes) through `/v1/jobs/batch`, a thousand
    /// at a time; their ids, in order. `submitted` hears the count so far.
    pub async fn submit(
        &self,
        http: &reqwest::Client,
        jobs: &[serde_json::Value],
        submitted: impl Fn(usize),
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(1000) {
            let r = http
                .post(format!("{}/v1/jobs/batch", self.api_url))
                .bearer_auth(&self.key)
                .json(&serde_json::json!({"jobs": chunk}))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 202, "submit: HTTP {}", r.status());
            let body: serde_json::Value = r.json().await?;
            let accepted = body["jobs"].as_array().into_iter().flatten();
            ids.extend(accepted.filter_map(|job| job["id"].as_str().map(str::to_owned)));
            submitted(ids.len());
        }
        anyhow::ensure!(
            ids.len() == jobs.len(),
            "{} ids for {} jobs",
            ids.len(),
            jobs.len()
        );
        Ok(ids)
    }

    /// Sets the bench tenant's limits (jobs and tokens per minute); `None`
    /// removes them.
    pub async fn set_limits(&self, limits: Option<(u64, u64)>) {
        let values = limits.map(|(jobs, tokens)| (jobs.to_string(), tokens.to_string()));
        let mut args = vec!["admin", "tenant", "limits", TENANT];
        if let Some((jobs, tokens)) = &values {
            args.extend(["--requests-per-minute", jobs, "--tokens-per-minute", tokens]);
        }
        self.stack.sluice(&args).await;
    }

    /// Stops the workers (SIGTERM: they drain first).
    pub async fn stop_workers(&mut self) {
        for worker in self.stack.workers.drain(..) {
            worker.stop(WORKER_DRAIN).await;
        }
    }

    /// The stack's processes by role (`mock`, `api`, `worker`) and this
    /// one (`bench`, the load generator), for the CPU split.
    pub fn roles(&self) -> Vec<(&'static str, u32)> {
        let s = &self.stack;
        let mocks = [Some(&s.mock), s.backup.as_ref()].into_iter().flatten();
        let mocks = mocks.map(|r| ("mock", r.id()));
        let api = s.api.iter().map(|r| ("api", r.id()));
        let workers = s.workers.iter().map(|r| ("worker", r.id()));
        mocks
            .chain(api)
            .chain(workers)
            .filter_map(|(role, pid)| pid.map(|pid| (role, pid)))
            .chain([("bench", std::process::id())])
            .collect()
    }

    /// Says what the roles logged, then removes the stack.
    pub fn finish(self) {
        for (role, log) in self.stack.logs() {
            crate::progress::line(&format!("bench: {role} logged:\n{}", log.trim_end()));
        }
    }
}
