//! Roles and their services at start and under failure: a role started
//! before its broker, or while Redis is still loading its data, waits
//! (alive, not ready, saying what it waits for) and becomes ready once the
//! service is; a role whose first broker address is dead uses the next.
//!
//! The shared services are never stopped: a service "not up yet" is a
//! port nothing listens on, later taken by a forwarder to the real one; a
//! Redis "loading" is a forwarder that answers `-LOADING` until told to
//! forward.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Client, Role, Stack, StackOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What a Redis replaying its append-only file answers to every command.
const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";

/// A TCP forwarder on a port of its own to a real service; while
/// `loading` is set, it answers every read with Redis's `LOADING` error
/// instead. Its connections end when it is dropped.
struct Forwarder {
    _tasks: JoinSet<()>,
}

impl Forwarder {
    async fn start(port: u16, upstream: String, loading: Arc<AtomicBool>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, loading) = (upstream.clone(), loading.load(Ordering::SeqCst));
                connections.spawn(async move {
                    if loading {
                        let mut buf = [0_u8; 4096];
                        while let Ok(n @ 1..) = client.read(&mut buf).await {
                            let _ = n;
                            if client.write_all(LOADING).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(upstream.as_str()).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { _tasks: tasks }
    }
}

/// A port nothing listens on (bound, then released).
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// `url` with its port replaced by `port` on 127.0.0.1; and the address it named.
fn on_port(url: &str, port: u16) -> (String, String) {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    let host = parsed.host_str().unwrap().to_owned();
    let upstream = format!("{host}:{}", parsed.port().unwrap());
    parsed.set_host(Some("127.0.0.1")).unwrap();
    parsed.set_port(Some(port)).unwrap();
    (parsed.to_string(), upstream)
}

fn env_value(stack: &Stack, name: &str) -> String {
    stack
        .env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap()
}

/// The stack's environment with `name` set to `value`.
fn env_with(stack: &Stack, name: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = stack
        .env
        .iter()
        .filter(|(k, _)| k != name)
        .cloned()
        .collect();
    env.push((name.to_owned(), value.to_owned()));
    env
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `base`'s `/readyz` until it says it waits for `dependency`;
/// checks `/healthz` answers 200 meanwhile.
async fn until_waiting_for(base: &str, dependency: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if body["waiting_for"] == dependency {
                assert_eq!(status, 503, "{body}");
                let (live, body) = get(&format!("{base}/healthz")).await;
                assert_eq!(live, 200, "alive while waiting: {body}");
                assert_eq!(body["waiting_for"], dependency);
                return;
            }
        }
        assert!(Instant::now() < deadline, "never waited for {dependency}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 4,
                    "messages": [{"role": "user", "content": prompt}]}})
}

/// Waits until a log of an API in `stack` contains `text` (the stack's own
/// API never waits, so a match is the replica's). Logs go to the caller's
/// stderr with `TEST_LOG`: nothing to read then.
async fn until_logged(stack: &Stack, text: &str) {
    if std::env::var_os("TEST_LOG").is_some() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logged = std::fs::read_dir(&stack.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("api-"))
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(text)
            });
        if logged {
            return;
        }
        assert!(Instant::now() < deadline, "no log line with {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts an API replica with `env` on a port chosen here, so that it can
/// be probed before it says it is ready.
async fn api_with(
    stack: &Stack,
    env: Vec<(String, String)>,
) -> (String, impl std::future::Future<Output = Role>) {
    let listen = format!("127.0.0.1:{}", free_port().await);
    let base = format!("http://{listen}");
    let (config, dir) = (stack.config_arg(), stack.dir.clone());
    let starting = async move {
        let args = ["api", "--listen", &listen, "--config", &config];
        Role::start("api", &args, &env, "listening on", &dir).await
    };
    (base, starting)
}

#[tokio::test]
async fn an_api_started_before_the_broker_waits_and_becomes_ready_when_it_is_up() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let port = free_port().await;
    let (amqp, upstream) = on_port(&env_value(&stack, "SLUICE_AMQP_URL"), port);
    let (base, starting) = api_with(&stack, env_with(&stack, "SLUICE_AMQP_URL", &amqp)).await;
    let probe = async {
        until_waiting_for(&base, "RabbitMQ").await;
        let refused = Client::new(&base, &acme.key)
            .post("/v1/jobs", &chat("too early"))
            .await;
        assert_eq!(refused.status, 503, "{:?}", refused.body);
        until_logged(&stack, "waiting for RabbitMQ").await;
        until_waiting_for(&base, "RabbitMQ").await;
        // The broker comes up.
        Forwarder::start(port, upstream, Arc::default()).await
    };
    let (_api, _broker) = tokio::join!(starting, probe);
    let (ready, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(ready, 200, "{body}");
    let client = Client::new(&base, &acme.key);
    let id = client.submit(&chat("after the broker came up")).await;
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn an_api_started_while_redis_loads_waits_and_becomes_ready_when_it_has_loaded() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let port = free_port().await;
    let (redis, upstream) = on_port(&env_value(&stack, "SLUICE_REDIS_URL"), port);
    let loading = Arc::new(AtomicBool::new(true));
    let _redis = Forwarder::start(port, upstream, Arc::clone(&loading)).await;
    let (base, starting) = api_with(&stack, env_with(&stack, "SLUICE_REDIS_URL", &redis)).await;
    let probe = async {
        until_waiting_for(&base, "Redis").await;
        until_logged(&stack, "LOADING").await;
        // Still waiting, not crashed: the data is loaded only now.
        until_waiting_for(&base, "Redis").await;
        loading.store(false, Ordering::SeqCst);
    };
    let (_api, ()) = tokio::join!(starting, probe);
    let (ready, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(ready, 200, "{body}");
    let client = Client::new(&base, &acme.key);
    let id = client.submit(&chat("after redis loaded")).await;
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_worker_whose_first_broker_address_is_dead_uses_the_next() {
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let real = env_value(&stack, "SLUICE_AMQP_URL");
    let (dead, _) = on_port(&real, free_port().await);
    let env = env_with(&stack, "SLUICE_AMQP_URL", &format!("{dead},{real}"));
    let config = stack.config_arg();
    let args = [
        "worker",
        "--config",
        &config,
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let worker = Role::start("worker", &args, &env, "metrics on", &stack.dir).await;
    let metrics = worker.addr.clone().unwrap();
    let (ready, body) = get(&format!("{metrics}/readyz")).await;
    assert_eq!(ready, 200, "{body}");
    assert_eq!(body["checks"], json!({"rabbitmq": true, "redis": true}));
    let id = client.submit(&chat("through the second node")).await;
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    stack.workers.push(worker);
}

#[tokio::test]
async fn an_api_keeps_accepting_within_seconds_when_its_broker_node_goes_away() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let real = env_value(&stack, "SLUICE_AMQP_URL");
    let (first_port, second_port) = (free_port().await, free_port().await);
    let (first_url, upstream) = on_port(&real, first_port);
    let (second_url, _) = on_port(&real, second_port);
    let first = Forwarder::start(first_port, upstream.clone(), Arc::default()).await;
    let _second = Forwarder::start(second_port, upstream, Arc::default()).await;
    let urls = format!("{first_url},{second_url}");
    let (base, starting) = api_with(&stack, env_with(&stack, "SLUICE_AMQP_URL", &urls)).await;
    let _api = starting.await;
    let client = Client::new(&base, &acme.key);

    // Submissions one after another; the node the API is on goes away
    // after 1.5 s (every connection through it cut).
    let (mut accepted, mut refused) = (Vec::new(), 0);
    let started = Instant::now();
    let mut first = Some(first);
    let mut gone_at = None;
    let mut back_after = None;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(6) {
        if gone_at.is_none() && started.elapsed() > Duration::from_millis(1500) {
            drop(first.take());
            gone_at = Some(Instant::now());
        }
        let r = client
            .post("/v1/jobs", &chat(&format!("failover {i}")))
            .await;
        match r.status {
            202 => {
                accepted.push(r.body["id"].as_str().unwrap().to_owned());
                if let (Some(gone), None) = (gone_at, back_after) {
                    back_after = Some(gone.elapsed());
                }
            }
            503 => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
        i += 1;
    }
    let back_after = back_after.expect("submissions accepted after the node went away");
    eprintln!(
        "accepted {}, refused {refused}; accepted again {back_after:?} after the node went away",
        accepted.len()
    );
    assert!(back_after < Duration::from_secs(3), "{back_after:?}");
    // It did move: the connection through the first node was lost.
    until_logged(&stack, "AMQP connection lost").await;
    // Nothing accepted is lost.
    for job in client.wait_all(&accepted, 60).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

#[tokio::test]
async fn a_worker_started_before_postgresql_waits_and_consumes_once_it_is_up() {
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let port = free_port().await;
    let (database, upstream) = on_port(&stack.database_url(), port);
    let env = env_with(&stack, "SLUICE_DATABASE_URL", &database);
    let listen = format!("127.0.0.1:{}", free_port().await);
    let base = format!("http://{listen}");
    let config = stack.config_arg();
    let args = ["worker", "--config", &config, "--metrics-listen", &listen];
    let starting = Role::start("worker", &args, &env, "metrics on", &stack.dir);
    let probe = async {
        until_waiting_for(&base, "PostgreSQL").await;
        // A job submitted meanwhile waits in the queue.
        let id = client.submit(&chat("before postgres")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        until_waiting_for(&base, "PostgreSQL").await;
        (id, Forwarder::start(port, upstream, Arc::default()).await)
    };
    let (worker, (id, _postgres)) = tokio::join!(starting, probe);
    let (ready, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(ready, 200, "{body}");
    let job = client.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    stack.workers.push(worker);
}
