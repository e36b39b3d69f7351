//! Webhooks for the jobs that end off the worker's main path: answered
//! from the cache at submit, or with an identical job in flight; and the
//! trace every attempt carries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::receiver::*;
#[tokio::test]
async fn jobs_answered_from_the_cache_or_with_a_job_in_flight_are_announced_too() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (mut stack, client) = signed_stack(&receiver, 0).await;
    let mut job = hooked("cache me", &receiver.url);
    job["body"]["temperature"] = json!(0);
    // No worker yet: the first leads, the next two join it in flight.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(client.submit(&job).await);
    }
    stack.start_worker().await;
    client.wait_all(&ids, 60).await;
    let hit = client.post("/v1/jobs", &job).await;
    assert_eq!(hit.status, 200, "{hit:?}");
    assert_eq!(hit.body["cached"], true);
    ids.push(hit.body["id"].as_str().unwrap().to_owned());

    let seen = receiver.until(30, |s| delivered(s).len() >= 4).await;
    assert!(seen.iter().all(|s| s.valid_signature), "{seen:?}");
    let by_id = delivered(&seen);
    for job in &ids {
        let id = format!("msg_{job}_succeeded");
        let event = &by_id
            .get(&id)
            .unwrap_or_else(|| panic!("no {id} in {seen:?}"))
            .body;
        assert_eq!(event["data"], client.job(job).await.body, "{job}");
    }
    let kinds: Vec<&Value> = ids[1..]
        .iter()
        .map(|j| &by_id[&format!("msg_{j}_succeeded")].body["data"]["cache"]["kind"])
        .collect();
    assert_eq!(
        kinds,
        [&json!("inflight"), &json!("inflight"), &json!("exact")]
    );
}

#[tokio::test]
async fn a_webhook_carries_the_jobs_trace() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let (_stack, client) = signed_stack(&receiver, 1).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = reqwest::Client::new()
        .post(format!("{}/v1/jobs", client.base))
        .bearer_auth(&client.key)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&hooked("traced", &receiver.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    client.wait(job["id"].as_str().unwrap(), 30).await;
    let seen = receiver.until(30, |s| !delivered(s).is_empty()).await;
    let traceparent = seen[0]
        .traceparent
        .clone()
        .expect("a traceparent on the webhook");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], trace, "the webhook is in the job's trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");
}
