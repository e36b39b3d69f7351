//! One run of the economics bench: the modes, a phase of each at a number
//! of users, and the sweep for the most users each mode serves within the
//! SLO.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::clients::Client;
use super::profile::{OwnLimit, Profile};
use super::users::{self, Measured, Phase};
use super::workload::Request;
use crate::progress::{self, Size};
use crate::stack::BenchStack;

/// The approaches compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Users call the paid provider themselves, retrying as an SDK does.
    Direct,
    /// Users submit to Sluice (batching, exact and in-flight cache).
    Sluice,
    /// The same, with every job's cache off.
    SluiceNoCache,
    /// Sluice, cache on, in front of a self-hosted server, its calls to it
    /// limited so.
    SelfHosted(OwnLimit),
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Direct,
        Mode::Sluice,
        Mode::SluiceNoCache,
        Mode::SelfHosted(OwnLimit::Default),
    ];

    pub fn name(self) -> String {
        match self {
            Self::Direct => "direct calls".into(),
            Self::Sluice => "sluice (batching + cache)".into(),
            Self::SluiceNoCache => "sluice without cache".into(),
            Self::SelfHosted(OwnLimit::Default) => "sluice + self-hosted endpoint".into(),
            Self::SelfHosted(OwnLimit::Fixed(n)) => format!("self-hosted, {n} calls/worker"),
            Self::SelfHosted(OwnLimit::Adaptive) => "self-hosted, adaptive".into(),
        }
    }

    /// A short name for files and flags.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Sluice => "sluice",
            Self::SluiceNoCache => "sluice-no-cache",
            Self::SelfHosted(_) => "self-hosted",
        }
    }
}

/// The paid provider's model route in the bench stack (the self-hosted
/// server's are [`OwnLimit::model`]).
pub const PAID_MODEL: &str = "paid-model";

/// One phase's figures.
#[derive(Clone, Debug)]
pub struct Point {
    pub mode: Mode,
    pub users: usize,
    pub measured: Measured,
    /// What the phase cost: the paid provider's bill, or the self-hosted
    /// server's hours.
    pub cost_micros: u64,
    /// Calls the provider served (429s not counted).
    pub provider_calls: u64,
    /// 429s the provider answered.
    pub rate_limited: u64,
    /// Sluice's jobs of the phase by the tier that answered them: tier,
    /// jobs and cost (µ$), from its usage report (empty for direct calls).
    pub tiers: Vec<(String, u64, u64)>,
    /// With an adaptive limit, each worker's limit at the phase's end.
    pub found: Vec<u64>,
}

impl Point {
    /// Dollars per 1,000 requests answered (a failed request is not
    /// billed, and is not a request served either).
    pub fn cost_per_1k(&self) -> f64 {
        if self.measured.answered == 0 {
            return 0.0;
        }
        self.cost_micros as f64 / 1e6 / self.measured.answered as f64 * 1_000.0
    }

    /// Whether the phase met the SLO: P95 within it, under 1% errors.
    pub fn within(&self, slo: Duration) -> bool {
        let m = &self.measured;
        m.count() > 0 && m.quantile(0.95) <= slo && m.error_rate() < 0.01
    }
}

/// The settings a phase needs, at the run's scale.
#[derive(Clone, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
    pub think: Duration,
    pub timeout: Duration,
    pub slo: Duration,
    /// How long a deferrable request may wait.
    pub deferrable_deadline: Duration,
}

pub struct Bench {
    pub stack: BenchStack,
    /// The paid provider's mock (the stack's own).
    paid_url: String,
    /// The self-hosted server's mock (the stack's backup).
    own_url: String,
    pub profile: Profile,
    pub timing: Timing,
    pub workload: Arc<Vec<Request>>,
    http: reqwest::Client,
}

impl Bench {
    pub fn new(
        stack: BenchStack,
        profile: Profile,
        timing: Timing,
        workload: Vec<Request>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4_096)
            .build()
            .unwrap_or_default();
        Self {
            paid_url: stack.stack.mock_url(),
            own_url: stack.stack.backup_url(),
            stack,
            profile,
            timing,
            workload: Arc::new(workload),
            http,
        }
    }

    fn mock_urls(&self) -> [&str; 2] {
        [&self.paid_url, &self.own_url]
    }

    fn client(&self, mode: Mode) -> Client {
        let sluice = |cache: Option<Value>| Client::Sluice {
            http: self.http.clone(),
            api: self.stack.api_url.clone(),
            key: self.stack.key.clone(),
            cache,
        };
        match mode {
            Mode::Direct => Client::Direct {
                http: self.http.clone(),
                url: format!("{}/v1/chat/completions", self.paid_url),
                scale: self.profile.scale,
            },
            Mode::Sluice | Mode::SelfHosted(_) => sluice(None),
            Mode::SluiceNoCache => sluice(Some(json!({"mode": "off"}))),
        }
    }

    /// Runs `users` users of `mode` from a clean start: both providers
    /// reset (bill, prefix cache, rate-limit window), Sluice's cache
    /// emptied.
    pub async fn phase(&self, mode: Mode, users: usize) -> anyhow::Result<Point> {
        self.settle().await?;
        for url in self.mock_urls() {
            let reset = self.http.post(format!("{url}/mock/reset")).send().await?;
            anyhow::ensure!(
                reset.status().is_success(),
                "mock reset: {}",
                reset.status()
            );
        }
        let cleared = self
            .http
            .delete(format!("{}/v1/cache", self.stack.api_url))
            .bearer_auth(&self.stack.key)
            .send()
            .await?;
        anyhow::ensure!(
            cleared.status().is_success(),
            "DELETE /v1/cache: {}",
            cleared.status()
        );
        let model = match mode {
            Mode::SelfHosted(limit) => limit.model(),
            _ => PAID_MODEL.to_owned(),
        };
        let phase = Phase {
            users,
            warmup: self.timing.warmup,
            measure: self.timing.measure,
            think: self.timing.think,
            timeout: self.timing.timeout,
            model,
            deferrable_deadline: self.timing.deferrable_deadline,
        };
        let shown = progress::phase(
            format!("econ: {}, {users} users", mode.name()),
            Size::Time(phase.warmup + phase.measure),
        );
        let client = self.client(mode);
        let started = chrono::Utc::now();
        let run = users::run(&client, Arc::clone(&self.workload), &phase);
        let measured = shown.follow(|| 0, run).await;
        // Jobs whose users gave up still run, and are billed: wait for them.
        self.settle().await?;
        let own = matches!(mode, Mode::SelfHosted(_));
        let provider = if own { &self.own_url } else { &self.paid_url };
        let stats = self.get(&format!("{provider}/mock/stats")).await?;
        let bill = self.get(&format!("{}/mock/bill", self.paid_url)).await?;
        let tiers = match mode {
            Mode::Direct => Vec::new(),
            _ => self.tiers_since(started).await?,
        };
        shown.done();
        let paid = bill["total_cost_micros"].as_u64().unwrap_or(0);
        let found = match mode {
            Mode::SelfHosted(limit @ OwnLimit::Adaptive) => self.limits_found(limit).await,
            _ => Vec::new(),
        };
        let cost_micros = if own {
            paid + self.profile.self_hosted_micros(measured.wall)
        } else {
            paid
        };
        Ok(Point {
            mode,
            users,
            cost_micros,
            provider_calls: stats["requests"].as_u64().unwrap_or(0),
            rate_limited: stats["rate_limited"].as_u64().unwrap_or(0),
            measured,
            tiers,
            found,
        })
    }

    /// Each worker's concurrency limit for `limit`'s provider now (its
    /// `sluice_provider_concurrency_limit`); a worker whose metrics cannot
    /// be read is left out.
    async fn limits_found(&self, limit: OwnLimit) -> Vec<u64> {
        let line = format!(
            "sluice_provider_concurrency_limit{{provider=\"{}\"}} ",
            limit.provider()
        );
        let mut found = Vec::new();
        for i in 0..self.stack.stack.workers.len() {
            let text = self.stack.stack.worker_metrics(i).await;
            found.extend(
                text.lines()
                    .find_map(|l| l.strip_prefix(&line))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|v| v as u64),
            );
        }
        found
    }

    /// Sluice's jobs since `from` by tier: tier, jobs, cost (µ$).
    async fn tiers_since(
        &self,
        from: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<(String, u64, u64)>> {
        let url = format!("{}/v1/usage", self.stack.api_url);
        let from = from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let report: Value = self
            .http
            .get(&url)
            .query(&[("from", from.as_str()), ("group_by", "tier")])
            .bearer_auth(&self.stack.key)
            .send()
            .await
            .context(url.clone())?
            .error_for_status()?
            .json()
            .await?;
        Ok(report["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|line| {
                (
                    line["group"]["tier"].as_str().unwrap_or("none").to_owned(),
                    line["jobs"].as_u64().unwrap_or(0),
                    line["cost_micros"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    async fn get(&self, url: &str) -> anyhow::Result<Value> {
        let r = self.http.get(url).send().await.context(url.to_owned())?;
        Ok(r.error_for_status()?.json().await?)
    }

    /// Waits until neither provider has served a request for a second
    /// (work left from a phase has ended), at most a minute.
    async fn settle(&self) -> anyhow::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            let mut served = 0;
            for url in self.mock_urls() {
                let s = self.get(&format!("{url}/mock/stats")).await?;
                served +=
                    s["requests"].as_u64().unwrap_or(0) + s["rate_limited"].as_u64().unwrap_or(0);
            }
            if last == Some(served) || Instant::now() > give_up {
                return Ok(());
            }
            last = Some(served);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The most users `mode` serves within the SLO: doubling from `start`
    /// until a phase misses it (or `max` is reached), then halving the gap
    /// until it is within an eighth. Every phase run is returned.
    pub async fn sweep(
        &self,
        mode: Mode,
        start: usize,
        max: usize,
        mut progress: impl FnMut(&Point, bool),
    ) -> anyhow::Result<(usize, Vec<Point>)> {
        let mut points = Vec::new();
        let (mut ok, mut bad) = (0usize, None::<usize>);
        let mut users = start.max(1);
        loop {
            let p = self.phase(mode, users).await?;
            let pass = p.within(self.timing.slo);
            progress(&p, pass);
            points.push(p);
            if pass {
                ok = users;
            } else {
                bad = Some(users);
            }
            users = match bad {
                None if users >= max => break,
                None => (users * 2).min(max),
                Some(bad) if bad - ok <= (ok / 8).max(1) => break,
                Some(bad) => (ok + bad) / 2,
            };
            if users == 0 {
                break;
            }
        }
        Ok((ok, points))
    }
}
