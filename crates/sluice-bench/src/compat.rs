//! `sluice-bench compat`: what the queue adds to an OpenAI-compatible
//! call. The mock provider answers at once (its default: no latency), and
//! `--connections` clients each send chat completions one after another for
//! `--seconds`: straight to the mock, then through Sluice's
//! `POST /v1/chat/completions` (a job: queue, worker, provider, long-poll),
//! in the same run. Each request is new (no cache hit), as a caller's
//! traffic mostly is. Reports the latency each way, what Sluice adds at
//! the median, and the requests per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::stats::percentile;

#[derive(Args, Debug)]
pub struct CompatArgs {
    /// Concurrent clients of each phase.
    #[arg(long, value_delimiter = ',', default_value = "2,64")]
    pub connections: Vec<usize>,
    /// How long each phase sends, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub conn: Connections,
}

/// One phase's figures.
struct Phase {
    latencies: Vec<Duration>,
    errors: usize,
    wall: Duration,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn ms(&self, q: f64) -> f64 {
        percentile(&self.latencies, q)
    }
}

pub async fn run(args: CompatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|&c| c > 0),
        "--connections must name at least one count above 0"
    );
    stack::measure_on(stack::options(&args.conn, args.workers), async |s| {
        measure(s, &args).await
    })
    .await
}

async fn measure(stack: &BenchStack, args: &CompatArgs) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let direct = format!("{}/v1/chat/completions", stack.stack.mock_url());
    let sluice = format!("{}/v1/chat/completions", stack.api_url);
    let mut out = format!(
        "## sluice-bench compat\n\nChat completions to a mock provider that answers at once, \
         {} s per phase, {} worker(s); each request new (no cache hit).\n\n\
         | connections | direct P50 | direct P95 | direct req/s | sluice P50 | sluice P95 | \
         sluice req/s | added P50 | errors (direct / sluice) |\n|---|---|---|---|---|---|---|---|---|\n",
        args.seconds, args.workers
    );
    for &connections in &args.connections {
        let d = phase(&http, &direct, None, connections, args.seconds, "direct").await;
        let s = phase(
            &http,
            &sluice,
            Some(&stack.key),
            connections,
            args.seconds,
            "sluice",
        )
        .await;
        out.push_str(&format!(
            "| {connections} | {:.1} ms | {:.1} ms | {:.0} | {:.1} ms | {:.1} ms | {:.0} | {:+.1} ms | {} / {} |\n",
            d.ms(0.5),
            d.ms(0.95),
            d.per_second(),
            s.ms(0.5),
            s.ms(0.95),
            s.per_second(),
            s.ms(0.5) - d.ms(0.5),
            d.errors,
            s.errors,
        ));
    }
    Ok(out)
}

/// `connections` clients sending one request after another to `url` for
/// `seconds`.
async fn phase(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    connections: usize,
    seconds: u64,
    name: &str,
) -> Phase {
    let shown = progress::phase(
        format!("compat: {name}, {connections} connections"),
        Size::Time(Duration::from_secs(seconds)),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    // Unique across runs and phases: no request is answered from the cache.
    let tag = Arc::new(format!(
        "{name}-{connections}-{}",
        sluice_core::JobId::new()
    ));
    let clients = (0..connections).map(|c| {
        let (http, url, key, tag) = (
            http.clone(),
            url.to_owned(),
            key.map(str::to_owned),
            Arc::clone(&tag),
        );
        async move {
            let (mut latencies, mut errors, mut i) = (Vec::new(), 0usize, 0usize);
            while Instant::now() < until {
                let body = json!({"model": "mock-small", "max_tokens": 8,
                    "messages": [{"role": "user", "content": format!("{tag} {c} {i}")}]});
                let mut request = http.post(&url).json(&body);
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                let sent = Instant::now();
                let answered = match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if answered {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (latencies, errors)
        }
    });
    let results = shown.follow(|| 0, futures::future::join_all(clients)).await;
    let wall = started.elapsed();
    shown.done();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (l, e) in results {
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Phase {
        latencies,
        errors,
        wall,
    }
}
