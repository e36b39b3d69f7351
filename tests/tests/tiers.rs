//! Cost tiers on the real services, against the mock provider's flex
//! tier: jobs that can wait go out on flex at the flex price, their costs
//! equal the mock's bill per tier to the micro-dollar, and a refused flex
//! call is followed by a standard one, in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Price, StackOptions, ODD_PRICE};

/// A stack whose mock sells flex (`unavailable`: the share it refuses)
/// and whose provider uses it for jobs with a minute or more to spare.
fn flex(unavailable: &str) -> StackOptions {
    StackOptions {
        mock_args: ODD_PRICE
            .mock_flags()
            .into_iter()
            .chain([
                "--flex-slowdown=2".to_owned(),
                format!("--flex-unavailable={unavailable}"),
            ])
            .collect(),
        provider_toml: "[providers.flex]\nmin_deadline_s = 60\nrealtime_margin_s = 30\n".into(),
        extra_toml: ODD_PRICE.toml("mock"),
        ..StackOptions::default()
    }
}

fn chat(i: usize, deadline_s: Option<u64>) -> Value {
    let mut job = json!({"body": {"model": "mock-small", "max_tokens": 5 + i % 7,
        "messages": [{"role": "user", "content": format!("tier question {i}")}]}});
    if let Some(s) = deadline_s {
        job["deadline_s"] = json!(s);
    }
    job
}

/// The sum of the jobs' costs on `tier`.
fn cost_on(jobs: &[Value], tier: &str) -> u64 {
    jobs.iter()
        .filter(|j| j["tier"] == tier)
        .map(|j| j["cost_micros"].as_u64().unwrap())
        .sum()
}

fn billed(bill: &Value, tier: &str) -> (u64, u64) {
    let t = &bill["by_tier"][tier];
    (
        t["requests"].as_u64().unwrap_or(0),
        t["cost_micros"].as_u64().unwrap_or(0),
    )
}

#[tokio::test]
async fn jobs_that_can_wait_go_out_on_flex_and_cost_what_the_provider_billed() {
    let (stack, client) = acme_stack(flex("0")).await;
    // Half may wait an hour; the other half cannot wait (no deadline), or
    // not long enough for flex (30 s, under min_deadline_s).
    let jobs: Vec<Value> = (0..24)
        .map(|i| match i % 4 {
            0 | 1 => chat(i, Some(3600)),
            2 => chat(i, None),
            _ => chat(i, Some(30)),
        })
        .collect();
    let ids = client.submit_batch(jobs).await;
    let ended = client.wait_all(&ids, 60).await;
    for (i, job) in ended.iter().enumerate() {
        assert_eq!(job["status"], "succeeded", "{job}");
        let want = if i % 4 < 2 { "flex" } else { "realtime" };
        assert_eq!(job["tier"], want, "job {i}: {job}");
        assert!(job["cost_micros"].as_u64().unwrap() > 0, "{job}");
    }
    let bill = stack.mock_bill().await;
    assert_eq!(
        billed(&bill, "flex"),
        (12, cost_on(&ended, "flex")),
        "{bill}"
    );
    assert_eq!(
        billed(&bill, "standard"),
        (12, cost_on(&ended, "realtime")),
        "{bill}"
    );
    // The flex tier billed its tokens at half the price, rounded up.
    let flex = &bill["by_tier"]["flex"];
    let half = Price {
        model: "mock-small",
        input: ODD_PRICE.input.div_ceil(2),
        cached_input: ODD_PRICE.cached_input.div_ceil(2),
        output: ODD_PRICE.output.div_ceil(2),
    };
    let prompt = flex["prompt_tokens"].as_u64().unwrap() - flex["cached_tokens"].as_u64().unwrap();
    let at_half = (prompt * half.input
        + flex["cached_tokens"].as_u64().unwrap() * half.cached_input
        + flex["completion_tokens"].as_u64().unwrap() * half.output)
        / 1_000_000;
    let charged = flex["cost_micros"].as_u64().unwrap();
    assert!(
        charged.abs_diff(at_half) <= 12,
        "flex cost {charged} vs {at_half} at half price (rounding once per request)"
    );

    // The usage report says the same, by tier.
    let usage = client.get("/v1/usage?group_by=tier").await;
    assert_eq!(usage.status, 200, "{usage:?}");
    let line = |tier: &str| {
        usage.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["group"]["tier"] == tier)
            .map(|l| {
                (
                    l["jobs"].as_u64().unwrap(),
                    l["cost_micros"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(line("flex"), Some((12, cost_on(&ended, "flex"))));
    assert_eq!(line("realtime"), Some((12, cost_on(&ended, "realtime"))));
}

#[tokio::test]
async fn a_refused_flex_call_is_made_again_in_real_time_before_the_deadline() {
    let (stack, client) = acme_stack(flex("1")).await;
    let ids = client
        .submit_batch((0..10).map(|i| chat(i, Some(3600))).collect())
        .await;
    let ended = client.wait_all(&ids, 60).await;
    for job in &ended {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["tier"], "realtime", "{job}");
    }
    let bill = stack.mock_bill().await;
    // Every flex call was refused, and nothing of them billed.
    assert_eq!(billed(&bill, "flex"), (0, 0), "{bill}");
    assert_eq!(billed(&bill, "standard"), (10, cost_on(&ended, "realtime")));
    let metrics = stack.worker_metrics(0).await;
    assert!(
        metrics
            .contains("sluice_flex_fallbacks_total{provider=\"mock\",reason=\"unavailable\"} 10"),
        "{metrics}"
    );
    // Each job's time from acceptance to its end, by the tier that answered.
    let durations = "sluice_job_duration_seconds_count{priority=\"standard\",tier=\"realtime\"} 10";
    assert!(metrics.contains(durations), "{metrics}");
}
