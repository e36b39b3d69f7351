//! `sluice-bench webhooks`: the webhooks role's delivery rate and the delay
//! from a job's end to its delivery, against the real RabbitMQ and
//! PostgreSQL and a local receiver, under a prefix and a database of its
//! own that it removes afterwards.
//!
//! The role runs in this process on a thread of its own with a
//! single-threaded runtime (one core's worth of it), with its own broker
//! connection and database pool; the receiver and the publisher run on the
//! main runtime. Job ends are published as the worker publishes them (one
//! confirmed event per ended job), with the job's end time set at publish.
//! Phase 1 fills the queue first, then starts the role and times it to the
//! last delivery. Phase 2 sends ends at a steady rate to the running role
//! and measures, at the receiver, each event's delay since its job ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use bytes::Bytes;
use chrono::Utc;
use clap::Args;
use sluice_core::config::WebhooksConfig;
use sluice_core::metrics::Metrics;
use sluice_core::webhook::{JobEvent, JobWebhook, WebhookMessage, WebhookSpec};
use sluice_core::{JobId, JobRecord, JobStatus};
use sluice_queue::{AmqpQueue, Topology, WebhookQueue};
use sluice_store::tenants::{self, PgTenantStore, TenantStore};
use sluice_store::webhooks::{PgWebhookStore, WebhookStore};
use sluice_testkit::Database;
use tokio_util::sync::CancellationToken;

use crate::cli::Connections;
use crate::progress::{self, Phase, Size};
use crate::stats::quantile;

#[derive(Args, Debug)]
pub struct WebhooksArgs {
    /// Events queued before the role starts (the delivery-rate phase).
    #[arg(long, default_value_t = 5_000)]
    pub deliveries: usize,
    /// Events sent to the running role in the delay phase.
    #[arg(long, default_value_t = 2_000)]
    pub latency_events: usize,
    /// Their rate, per second.
    #[arg(long, default_value_t = 200)]
    pub rate: usize,
    /// Attempts in flight in the role (its prefetch).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u16,
    #[command(flatten)]
    pub conn: Connections,
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    delays_ms: Mutex<Vec<f64>>,
}

async fn receive(axum::extract::State(seen): axum::extract::State<Arc<Seen>>, body: Bytes) {
    let now = Utc::now();
    let ended = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    if let Some(ended) = ended {
        let ms = (now - ended.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        seen.delays_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ms);
    }
    seen.count.fetch_add(1, Ordering::SeqCst);
}

fn ended_job(tenant: &str, url: &url::Url) -> JobRecord {
    let now = Utc::now();
    let mut r = JobRecord::queued(
        JobId::new(),
        tenant.to_owned(),
        Default::default(),
        "mock-small".into(),
        Default::default(),
        Default::default(),
        now,
        None,
    );
    r.status = JobStatus::Succeeded;
    r.started_at = Some(now);
    r.finished_at = Some(now);
    r.attempts = 1;
    r.result = Some(
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": "hello"}}]}),
    );
    r.webhook = Some(JobWebhook::Url(WebhookSpec {
        url: url.clone(),
        events: sluice_core::webhook::EventKind::ALL.to_vec(),
    }));
    r
}

async fn publish(queue: &AmqpQueue, tenant: &str, url: &url::Url, n: usize) -> anyhow::Result<()> {
    let messages = (0..n)
        .filter_map(|_| JobEvent::of(&ended_job(tenant, url)))
        .map(|e| Ok((Bytes::from(WebhookMessage::Event(e).encode()?), 0)))
        .collect::<Result<Vec<(Bytes, u64)>, serde_json::Error>>()
        .context("encoding a job end")?;
    for r in queue.publish_webhooks(messages).await {
        r.context("publishing a job end")?;
    }
    Ok(())
}

/// Waits until `n` deliveries were seen, counting those past `from` in
/// `phase`.
async fn wait_for(seen: &Seen, n: usize, phase: &Phase, from: usize) -> anyhow::Result<()> {
    let give_up = Instant::now() + crate::PHASE_LIMIT;
    loop {
        let count = seen.count.load(Ordering::SeqCst);
        phase.set(count.saturating_sub(from) as u64);
        if count >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < give_up, "deliveries stalled at {count}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    let unique = ulid::Ulid::new().to_string().to_lowercase();
    let prefix = format!("bench-{unique}");
    let services = crate::cli::services(&args.conn);
    let database = Database::create(&services, &format!("sluice_bench_{unique}")).await;
    let config = WebhooksConfig {
        schedule_s: vec![0.0, 1.0],
        allow: vec!["127.0.0.0/8".into()],
        concurrency: args.concurrency,
        ..WebhooksConfig::default()
    };
    let topology = Topology::new(prefix.clone(), 5).with_webhook_delays(config.delays_ms());
    let outcome = measure(&args, &config, &topology, &database).await;
    services.remove_prefix(&prefix, config.delays_ms()).await;
    drop(database);
    crate::say(&outcome?);
    Ok(())
}

async fn measure(
    args: &WebhooksArgs,
    config: &WebhooksConfig,
    topology: &Topology,
    database: &Database,
) -> anyhow::Result<String> {
    let pool = database.migrated().await;
    let tenant = PgTenantStore::new(pool.clone())
        .create_tenant("bench")
        .await?
        .id;
    PgWebhookStore::new(pool.clone())
        .rotate_tenant_secret(&tenant, Duration::ZERO)
        .await?;

    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url: url::Url = format!("http://{}/hook", listener.local_addr()?).parse()?;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&seen));
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await;
    });
    let queue = AmqpQueue::connect(&args.conn.amqp_url, topology.clone()).await?;

    let phase = progress::phase(
        format!("queueing {} job ends", args.deliveries),
        Size::Items(args.deliveries as u64),
    );
    for chunk in (0..args.deliveries).collect::<Vec<_>>().chunks(500) {
        publish(&queue, &tenant, &url, chunk.len()).await?;
        phase.inc(chunk.len() as u64);
    }
    phase.done();

    // The role, on one thread.
    let role_stop = stop.clone();
    let (amqp_url, db_url, topology, config) = (
        args.conn.amqp_url.clone(),
        database.url.clone(),
        topology.clone(),
        config.clone(),
    );
    let started = Instant::now();
    let role = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let queue = Arc::new(AmqpQueue::connect(&amqp_url, topology.clone()).await?);
            let store = Arc::new(PgWebhookStore::new(tenants::connect(&db_url).await?));
            let metrics = Metrics::new();
            let dispatcher = sluice_webhooks::Dispatcher {
                queue: queue.clone(),
                retries: queue.clone(),
                store,
                config,
                topology,
                metrics: sluice_webhooks::WebhookMetrics::register(&metrics),
            };
            dispatcher.run(role_stop).await?;
            sluice_queue::JobQueue::close(queue.as_ref()).await;
            anyhow::Ok(())
        })
    });
    let outcome = async {
        let phase = progress::phase(
            "delivering them (the role on one thread)",
            Size::Items(args.deliveries as u64),
        );
        wait_for(&seen, args.deliveries, &phase, 0).await?;
        let rate_elapsed = started.elapsed();
        phase.done();
        seen.delays_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();

        let phase = progress::phase(
            format!(
                "{} job ends at {}/s to the running role",
                args.latency_events, args.rate
            ),
            Size::Items(args.latency_events as u64),
        );
        let tick = Duration::from_millis(10);
        let per_tick = (args.rate / 100).max(1);
        let mut sent = 0;
        let mut next = tokio::time::Instant::now();
        while sent < args.latency_events {
            let n = per_tick.min(args.latency_events - sent);
            publish(&queue, &tenant, &url, n).await?;
            sent += n;
            next += tick;
            tokio::time::sleep_until(next).await;
        }
        let all = args.deliveries + args.latency_events;
        wait_for(&seen, all, &phase, args.deliveries).await?;
        phase.done();
        anyhow::Ok(rate_elapsed)
    }
    .await;
    stop.cancel();
    let _ = tokio::task::spawn_blocking(move || role.join()).await;
    tasks.close();
    tasks.wait().await;
    sluice_queue::JobQueue::close(&queue).await;
    let rate_elapsed = outcome?;

    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(&pool)
        .await?;
    let mut delays = seen
        .delays_ms
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    delays.sort_by(f64::total_cmp);
    let per_s = args.deliveries as f64 / rate_elapsed.as_secs_f64();
    Ok(format!(
        "| figure | value |\n|---|---|\n\
         | deliveries/s, role on one thread ({} queued, prefetch {}) | {per_s:.0} |\n\
         | job end → delivery p50 at {}/s | {:.1} ms |\n\
         | job end → delivery p99 at {}/s | {:.1} ms |\n\
         | attempts recorded in PostgreSQL | {recorded} of {} |",
        args.deliveries,
        args.concurrency,
        args.rate,
        quantile(&delays, 0.50).unwrap_or(f64::NAN),
        args.rate,
        quantile(&delays, 0.99).unwrap_or(f64::NAN),
        args.deliveries + args.latency_events,
    ))
}
