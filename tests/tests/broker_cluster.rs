//! Broker failover on a real RabbitMQ cluster: three nodes of their own on
//! this machine (`scripts/rabbit-cluster.sh`), joined with `join_cluster`,
//! so that the quorum queues replicate. The node the API is connected to
//! stops while a client submits; submissions are accepted again within
//! seconds, on another node, and every accepted job ends.
//!
//! The shared broker is never touched: the cluster has its own ports,
//! cookie and data, and is stopped (its directory removed) when the test
//! ends, even by a panic. The test is `disruptive_*`: three extra brokers
//! are heavy on a small machine, so `scripts/test.sh` runs it alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Client, StackOptions};
use sluice_testkit::Services;

/// How soon after the node stops submissions must be accepted again: the
/// API reconnects at once to the next node, and the quorum queues elect
/// new leaders in a few seconds; generous, since the machine is small.
const ACCEPTED_AGAIN_WITHIN: Duration = Duration::from_secs(15);

/// Submissions go on this long before the node stops, and this long after.
const BEFORE_STOP: Duration = Duration::from_secs(3);
const AFTER_STOP: Duration = Duration::from_secs(8);

/// No 503 later than this after the stop began: by then the queues have
/// new leaders. Before a nacked publisher channel was retired, a channel
/// that published during the election kept nacking every later publish
/// (about one submission in four refused for the rest of the run, in 4 of
/// 7 runs); since, 0 in 4 runs.
const LATE: Duration = Duration::from_secs(5);

/// The pause between submissions (about 50 a second: enough to see the
/// gap to a few tens of milliseconds, few enough for one worker).
const PACE: Duration = Duration::from_millis(20);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbit-cluster.sh")
}

/// A local 3-node cluster, stopped (and its directory removed) on drop.
struct Cluster {
    dir: PathBuf,
    /// `name@localhost` and AMQP port of each node, the seed first.
    nodes: Vec<(String, u16)>,
    /// The nodes' URLs, separated by commas.
    urls: String,
}

impl Cluster {
    /// Starts the cluster; a machine that cannot run it fails the test
    /// with the script's reason.
    fn start() -> Self {
        let unique = ulid::Ulid::new().to_string().to_lowercase();
        let mut cluster = Cluster {
            dir: std::env::temp_dir().join(format!("rabbit-cluster-{unique}")),
            nodes: Vec::new(),
            urls: String::new(),
        };
        // `cluster` exists before the script runs, so that a half-started
        // cluster is stopped (on drop) too.
        let started = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(&cluster.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "cannot start a local 3-node RabbitMQ cluster: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        eprintln!(
            "{}cluster started in {:.1?}",
            String::from_utf8_lossy(&out.stdout),
            started.elapsed()
        );
        let nodes = std::fs::read_to_string(cluster.dir.join("nodes")).unwrap();
        cluster.nodes = nodes
            .lines()
            .map(|line| {
                let mut fields = line.split_whitespace();
                let (name, port) = (fields.next().unwrap(), fields.next().unwrap());
                (format!("{name}@localhost"), port.parse().unwrap())
            })
            .collect();
        cluster.urls = std::fs::read_to_string(cluster.dir.join("urls"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(cluster.nodes.len(), 3, "{nodes}");
        cluster
    }

    /// `rabbitmqctl -n NODE ARGS` with the cluster's cookie; its stdout.
    async fn ctl(&self, node: &str, args: &[&str]) -> String {
        let out = tokio::process::Command::new(script())
            .arg("ctl")
            .arg(&self.dir)
            .args(["-n", node])
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl -n {node} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `node` again after a `stop`, on its old ports and data.
    async fn start_node(&self, node: &str) {
        let out = tokio::process::Command::new(script())
            .arg("start-node")
            .arg(&self.dir)
            .arg(node)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "cannot start {node} again: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    }

    /// The running nodes, as `node` sees them.
    async fn running(&self, node: &str) -> Vec<String> {
        let status = self
            .ctl(node, &["cluster_status", "--formatter", "json"])
            .await;
        let status: Value = serde_json::from_str(&status).unwrap();
        let mut running: Vec<String> = status["running_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        running.sort();
        running
    }

    /// The node that process `pid` holds an AMQP connection to (from the
    /// kernel's socket table: `ss` names each socket's process).
    fn node_of(&self, pid: u32) -> Option<&str> {
        let out = Command::new("ss").args(["-Htnp"]).output().unwrap();
        assert!(out.status.success(), "ss -Htnp failed");
        let owner = format!("pid={pid},");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ESTAB") && l.contains(&owner))
            .filter_map(|l| l.split_whitespace().nth(4)?.rsplit_once(':'))
            .find_map(|(_, port)| {
                let port: u16 = port.parse().ok()?;
                self.nodes.iter().find(|(_, p)| *p == port)
            })
            .map(|(name, _)| name.as_str())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match Command::new(script()).arg("stop").arg(&self.dir).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cleanup: stopping the cluster in {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cleanup: cannot run {}: {e}", script().display()),
        }
    }
}

fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 4,
                    "messages": [{"role": "user", "content": prompt}]}})
}

/// One submission: when it was answered, and the job's id if accepted.
struct Attempt {
    at: Instant,
    accepted: Option<String>,
}

/// Submits one job after another until `until`, `PACE` apart.
async fn submit_until(client: &Client, until: Instant) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut i = 0;
    while Instant::now() < until {
        let r = client
            .post("/v1/jobs", &chat(&format!("cluster {i}")))
            .await;
        let accepted = match r.status {
            202 => Some(r.body["id"].as_str().unwrap().to_owned()),
            503 => None,
            other => panic!("unexpected {other}: {r:?}"),
        };
        attempts.push(Attempt {
            at: Instant::now(),
            accepted,
        });
        i += 1;
        tokio::time::sleep(PACE).await;
    }
    attempts
}

#[tokio::test]
async fn disruptive_submissions_go_on_when_the_api_s_rabbitmq_node_stops() {
    let began = Instant::now();
    let cluster = Cluster::start();
    let services = Services {
        amqp_url: cluster.urls.clone(),
        ..Services::from_env()
    };
    let (stack, acme) = acme_stack(StackOptions {
        services,
        ..StackOptions::default()
    })
    .await;
    let api = stack.api.as_ref().unwrap().pid();
    let worker = stack.workers[0].pid();
    let node = cluster
        .node_of(api)
        .expect("the API holds a connection to a node of the cluster")
        .to_owned();
    eprintln!(
        "API on {node}, worker on {:?}",
        cluster.node_of(worker).unwrap_or("none")
    );

    // Submissions one after another; the API's node stops after BEFORE_STOP.
    let start = Instant::now();
    let submitting = submit_until(&acme, start + BEFORE_STOP + AFTER_STOP);
    let stopping = async {
        tokio::time::sleep(BEFORE_STOP).await;
        let at = Instant::now();
        // The whole node (its Erlang VM) stops, not only the broker.
        cluster.ctl(&node, &["stop"]).await;
        (at, at.elapsed())
    };
    let (attempts, (stopped_at, stopping_took)) = tokio::join!(submitting, stopping);

    // The longest wait between two accepted submissions spans the stop.
    let accepted_at: Vec<Instant> = attempts
        .iter()
        .filter(|a| a.accepted.is_some())
        .map(|a| a.at)
        .collect();
    let gap = accepted_at.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    let refused = attempts.iter().filter(|a| a.accepted.is_none()).count();
    let again = accepted_at
        .iter()
        .find(|at| **at > stopped_at + stopping_took)
        .map(|at| *at - stopped_at);
    let accepted: Vec<String> = attempts.iter().filter_map(|a| a.accepted.clone()).collect();
    let after: Vec<String> = attempts
        .iter()
        .filter(|a| a.at > stopped_at + stopping_took)
        .filter_map(|a| a.accepted.clone())
        .collect();
    let refused_at: Vec<Duration> = attempts
        .iter()
        .filter(|a| a.accepted.is_none())
        .map(|a| a.at.saturating_duration_since(stopped_at))
        .collect();
    let late = refused_at.iter().filter(|d| **d > LATE).count();
    let moved_to = cluster.node_of(api).map(str::to_owned);
    eprintln!(
        "{} submissions: {} accepted ({} after the stop), {refused} refused (503); \
         `rabbitmqctl stop` took {stopping_took:.1?}; longest gap between acceptances {gap:.2?}; \
         first acceptance after `stop` returned {again:.2?} after it began; API now on {moved_to:?}; \
         503s from {:.2?} to {:.2?} after the stop began, {late} of them later than {LATE:?}",
        attempts.len(),
        accepted.len(),
        after.len(),
        refused_at.first().copied().unwrap_or_default(),
        refused_at.last().copied().unwrap_or_default(),
    );
    assert!(
        gap < ACCEPTED_AGAIN_WITHIN,
        "no submission accepted for {gap:?}"
    );
    assert_eq!(late, 0, "submissions still refused {LATE:?} after the stop");
    let again = again.expect("submissions accepted after the node stopped");
    assert!(
        again < ACCEPTED_AGAIN_WITHIN,
        "accepted again after {again:?}"
    );
    let moved_to = moved_to.expect("the API reconnected to the cluster");
    assert_ne!(moved_to, node, "the API moved to another node");

    // Nothing accepted is lost, and the worker went on working: the jobs
    // accepted after the stop end too.
    let waited = Instant::now();
    let jobs = acme.wait_all(&accepted, 90).await;
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let ended: HashSet<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert!(after.iter().all(|id| ended.contains(id.as_str())));
    eprintln!(
        "all {} accepted jobs succeeded ({:.1?} to collect them)",
        jobs.len(),
        waited.elapsed()
    );

    // The node comes back and rejoins the cluster.
    cluster.start_node(&node).await;
    let all: Vec<String> = {
        let mut all: Vec<String> = cluster.nodes.iter().map(|(n, _)| n.clone()).collect();
        all.sort();
        all
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = cluster.running(&node).await;
        if running == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{node} did not rejoin: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let id = acme.submit(&chat("after the node came back")).await;
    let job = acme.wait(&id, 30).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    eprintln!("{node} rejoined; whole test {:.1?}", began.elapsed());
    drop(stack);
}
