use super::*;
use async_trait::async_trait;
use serde_json::json;
use sluice_core::tier::FlexConfig;
use sluice_core::{JobId, Tier, Usage};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fails its first `failures` calls with `error`, then answers.
struct Flaky {
    name: String,
    failures: u32,
    error: ProviderError,
    calls: AtomicU32,
}

#[async_trait]
impl Provider for Flaky {
    fn name(&self) -> &str {
        &self.name
    }
    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        batch
            .jobs
            .iter()
            .map(|j| {
                if call < self.failures {
                    Err(self.error.clone())
                } else {
                    Ok(Answer {
                        body: json!({"id": j.id.to_string(), "by": self.name}),
                        usage: Usage::new(1, 1, 0),
                        cost_micros: Some(1),
                        tier: batch.tier(),
                    })
                }
            })
            .collect()
    }
}

fn flaky(name: &str, failures: u32, error: ProviderError) -> Arc<Flaky> {
    Arc::new(Flaky {
        name: name.into(),
        failures,
        error,
        calls: AtomicU32::new(0),
    })
}

fn transient() -> ProviderError {
    ProviderError::Transient {
        provider: "p".into(),
        message: "503".into(),
    }
}

fn router(providers: Vec<Arc<dyn Provider>>) -> Router {
    let mut routes = HashMap::new();
    routes.insert("m".to_owned(), Route::ordered(providers, "m"));
    Router::new(
        routes,
        RetryPolicy {
            attempts: 2,
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
    )
}

fn jobs(n: usize) -> Vec<BatchJob> {
    (0..n)
        .map(|_| BatchJob {
            id: JobId::new(),
            body: json!({}),
            traceparent: None,
            deadline: None,
            stream: false,
        })
        .collect()
}

/// Jobs that must be answered `within` from now.
fn jobs_within(n: usize, within: chrono::Duration) -> Vec<BatchJob> {
    let mut jobs = jobs(n);
    for j in &mut jobs {
        j.deadline = Some(chrono::Utc::now() + within);
    }
    jobs
}

/// Sells flex; refuses it (429) if `refuse`; counts its calls by tier
/// and keeps the flex calls' timeouts.
struct Tiered {
    flex: FlexConfig,
    refuse: bool,
    standard: AtomicU32,
    timeouts: std::sync::Mutex<Vec<Duration>>,
}

impl Tiered {
    fn new(refuse: bool) -> Arc<Self> {
        Arc::new(Self {
            flex: FlexConfig::default(),
            refuse,
            standard: AtomicU32::new(0),
            timeouts: Default::default(),
        })
    }

    fn flex_calls(&self) -> usize {
        self.timeouts.lock().unwrap().len()
    }
}

#[async_trait]
impl Provider for Tiered {
    fn name(&self) -> &str {
        "tiered"
    }
    fn flex(&self) -> Option<&FlexConfig> {
        Some(&self.flex)
    }
    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>> {
        match batch.flex {
            Some(timeout) => self.timeouts.lock().unwrap().push(timeout),
            None => {
                self.standard.fetch_add(1, Ordering::SeqCst);
            }
        }
        let refused = ProviderError::RetryAfter {
            provider: "tiered".into(),
            after: Duration::from_secs(30),
            message: "HTTP 429: Resource Unavailable".into(),
        };
        batch
            .jobs
            .iter()
            .map(|_| {
                if self.refuse && batch.flex.is_some() {
                    return Err(refused.clone());
                }
                Ok(Answer {
                    body: json!({}),
                    usage: Usage::new(1, 1, 0),
                    cost_micros: Some(1),
                    tier: batch.tier(),
                })
            })
            .collect()
    }
}

#[tokio::test]
async fn jobs_that_can_wait_go_out_on_flex_and_the_rest_in_real_time() {
    let p = Tiered::new(false);
    let r = router(vec![p.clone()]);
    let ends = r
        .call(
            "m",
            Endpoint::Completions,
            "",
            jobs_within(3, chrono::Duration::hours(1)),
        )
        .await;
    assert!(ends
        .iter()
        .all(|e| e.as_ref().unwrap().0.tier == Tier::Flex));
    assert_eq!((p.flex_calls(), p.standard.load(Ordering::SeqCst)), (1, 0));
    // The flex timeout: the config's, as an hour leaves room for it.
    assert_eq!(p.timeouts.lock().unwrap()[0], Duration::from_secs(900));

    // A call with one job that cannot wait goes out in real time, whole.
    let mut mixed = jobs_within(2, chrono::Duration::hours(1));
    mixed.extend(jobs(1));
    let ends = r.call("m", Endpoint::Completions, "", mixed).await;
    assert!(ends
        .iter()
        .all(|e| e.as_ref().unwrap().0.tier == Tier::Realtime));
    // So does a deadline too close for flex.
    let soon = jobs_within(1, chrono::Duration::minutes(5));
    let ends = r.call("m", Endpoint::Completions, "", soon).await;
    assert_eq!(ends[0].as_ref().unwrap().0.tier, Tier::Realtime);
    assert_eq!((p.flex_calls(), p.standard.load(Ordering::SeqCst)), (1, 2));
}

#[tokio::test]
async fn a_flex_refusal_falls_back_to_a_standard_call_at_once_and_opens_no_breaker() {
    let p = Tiered::new(true);
    let r = router(vec![p.clone()]);
    let started = std::time::Instant::now();
    // More refusals than the breaker's five: it must stay closed.
    for _ in 0..8 {
        let ends = r
            .call(
                "m",
                Endpoint::Completions,
                "",
                jobs_within(2, chrono::Duration::hours(1)),
            )
            .await;
        assert!(ends
            .iter()
            .all(|e| e.as_ref().unwrap().0.tier == Tier::Realtime));
    }
    assert_eq!((p.flex_calls(), p.standard.load(Ordering::SeqCst)), (8, 8));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the refusal's Retry-After is not waited before the standard call"
    );
}

#[tokio::test]
async fn a_caller_who_chose_a_service_tier_keeps_it() {
    let p = Tiered::new(false);
    let r = router(vec![p.clone()]);
    let mut chosen = jobs_within(1, chrono::Duration::hours(1));
    chosen[0].body = json!({"service_tier": "priority"});
    r.call("m", Endpoint::ChatCompletions, "", chosen).await;
    assert_eq!((p.flex_calls(), p.standard.load(Ordering::SeqCst)), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn retries_then_falls_back_to_the_next_provider() {
    let first = flaky("first", 10, transient());
    let second = flaky("second", 0, transient());
    let r = router(vec![first.clone(), second.clone()]);
    let ends = r.call("m", Endpoint::ChatCompletions, "", jobs(3)).await;
    assert!(ends.iter().all(|e| e.as_ref().unwrap().1 == "second"));
    assert_eq!(first.calls.load(Ordering::SeqCst), 2);
    assert_eq!(second.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_terminal_error_is_not_retried() {
    let terminal = ProviderError::Terminal {
        provider: "p".into(),
        message: "HTTP 400: bad".into(),
        rejection: None,
    };
    let only = flaky("only", 10, terminal.clone());
    let backup = flaky("backup", 0, transient());
    let r = router(vec![only.clone(), backup.clone()]);
    let ends = r.call("m", Endpoint::ChatCompletions, "", jobs(2)).await;
    assert!(ends.iter().all(|e| e.as_ref().unwrap_err() == &terminal));
    assert_eq!(only.calls.load(Ordering::SeqCst), 1);
    assert_eq!(backup.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_least_wait() {
    let asked = ProviderError::RetryAfter {
        provider: "p".into(),
        after: Duration::from_secs(3),
        message: "429".into(),
    };
    let p = flaky("p", 1, asked);
    let r = router(vec![p.clone()]);
    let started = tokio::time::Instant::now();
    let ends = r.call("m", Endpoint::ChatCompletions, "", jobs(1)).await;
    assert!(ends[0].is_ok());
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_skips_a_dead_provider_without_calling_it() {
    let dead = flaky("dead", u32::MAX, transient());
    let backup = flaky("backup", 0, transient());
    let r = router(vec![dead.clone(), backup.clone()]);
    // Default breaker: 5 failed calls open it. Each call here makes 2 attempts.
    for _ in 0..3 {
        let ends = r.call("m", Endpoint::ChatCompletions, "", jobs(1)).await;
        assert_eq!(ends[0].as_ref().unwrap().1, "backup");
    }
    assert_eq!(dead.calls.load(Ordering::SeqCst), 5);
    for _ in 0..10 {
        r.call("m", Endpoint::ChatCompletions, "", jobs(1)).await;
    }
    assert_eq!(
        dead.calls.load(Ordering::SeqCst),
        5,
        "no call was spent on the open provider"
    );
    assert_eq!(backup.calls.load(Ordering::SeqCst), 13);
    // After the cool-down one probe goes to it again.
    tokio::time::advance(Duration::from_secs(10)).await;
    r.call("m", Endpoint::ChatCompletions, "", jobs(1)).await;
    assert_eq!(dead.calls.load(Ordering::SeqCst), 6);
}

#[test]
fn weighted_equals_share_the_first_place_by_weight() {
    use rand::SeedableRng;
    let (a, b, c) = (
        flaky("a", 0, transient()),
        flaky("b", 0, transient()),
        flaky("c", 0, transient()),
    );
    let route = Route {
        providers: vec![a, b, c],
        upstream_model: "m".into(),
        weights: vec![3, 0, 1],
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut first = HashMap::new();
    for _ in 0..4000 {
        let order: Vec<&str> = route.order(&mut rng).iter().map(|p| p.name()).collect();
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], "b", "the unweighted provider follows the equals");
        *first.entry(order[0]).or_insert(0) += 1;
    }
    let a_share = f64::from(first["a"]) / 4000.0;
    assert!(
        (0.70..0.80).contains(&a_share),
        "a went first {a_share} of the time"
    );
}

#[tokio::test]
async fn an_unknown_model_fails_every_job() {
    let r = router(vec![]);
    let ends = r.call("nope", Endpoint::ChatCompletions, "", jobs(2)).await;
    assert_eq!(ends.len(), 2);
    assert!(ends.iter().all(|e| !e.as_ref().unwrap_err().is_retryable()));
}

#[tokio::test]
async fn calls_given_up_on_after_they_left_come_back_with_the_ends() {
    let abandoned = ProviderError::Abandoned {
        provider: "first".into(),
        message: "request timed out".into(),
    };
    // Two timeouts at the first provider (its attempts), a refusal and
    // then an answer at the second: only the timeouts may have been billed.
    let first = flaky("first", 2, abandoned);
    let second = flaky("second", 1, transient());
    let r = router(vec![first.clone(), second.clone()]);
    let routed = r.route("m", Endpoint::ChatCompletions, "", jobs(2)).await;
    assert!(routed
        .ends
        .iter()
        .all(|e| e.as_ref().unwrap().1 == "second"));
    let timed_out = Abandoned {
        provider: "first".into(),
        tier: Tier::Realtime,
    };
    assert_eq!(
        routed.abandoned,
        vec![vec![timed_out.clone(), timed_out.clone()]; 2]
    );
    assert!(r
        .route("nope", Endpoint::ChatCompletions, "", jobs(1))
        .await
        .abandoned
        .iter()
        .all(Vec::is_empty));
}
