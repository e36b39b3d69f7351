//! One trace per job: a `traceparent` sent with a submission comes back on
//! the answer, travels in the AMQP headers to the worker, reaches the
//! provider with the same trace id, and the worker's JSON log lines about
//! the job carry its job id and trace id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{Stack, StackExt, StackOptions};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// (trace id, span id) of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    assert_eq!((p[0], p[3]), ("00", "01"), "{traceparent}");
    assert_eq!((p[1].len(), p[2].len()), (32, 16), "{traceparent}");
    (p[1].to_owned(), p[2].to_owned())
}

#[tokio::test]
async fn a_jobs_trace_reaches_the_provider_and_the_logs() {
    let mut stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    // The worker logs JSON, with each job's end at debug level.
    stack.env.push(("SLUICE_LOG_FORMAT".into(), "json".into()));
    stack.env.push((
        "SLUICE_LOG".into(),
        "info,sluice_worker=debug,lapin=warn,fred=warn,sqlx=warn".into(),
    ));
    stack.start_worker().await;
    let client = stack.tenant("acme").await;
    let http = reqwest::Client::new();

    // A chat job (one provider call per job) inside the caller's trace.
    let r = http
        .post(format!("{}/v1/jobs", stack.api_url()))
        .bearer_auth(&client.key)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"body": {"model": "mock-small",
            "messages": [{"role": "user", "content": "trace me"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (trace, api_span) = parts(r.headers()["traceparent"].to_str().unwrap());
    assert_eq!(trace, TRACE, "the answer continues the caller's trace");
    assert_ne!(api_span, CALLER_SPAN, "the API names its own span");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A submission without one starts a trace, and says which.
    let r = http
        .post(format!("{}/v1/jobs", stack.api_url()))
        .bearer_auth(&client.key)
        .json(&json!({"endpoint": "/v1/completions",
            "body": {"model": "mock-small", "prompt": "untraced"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (fresh, _) = parts(r.headers()["traceparent"].to_str().unwrap());
    assert_ne!(fresh, TRACE);
    let other = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for job in client.wait_all(&[id.clone(), other], 30).await {
        assert_eq!(job["status"], "succeeded", "{job}");
    }

    // The provider received both traces, each on its own call, each from
    // a span of the worker's (not the caller's, not the API's).
    let traces: Value = reqwest::get(format!("{}/mock/traces", stack.mock_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen: Vec<(String, String)> = traces["traceparents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| parts(t.as_str().unwrap()))
        .collect();
    assert_eq!(traces["without"], 0, "{traces}");
    let ours: Vec<&(String, String)> = seen.iter().filter(|(t, _)| t == TRACE).collect();
    assert_eq!(ours.len(), 1, "{traces}");
    assert!(
        ours[0].1 != CALLER_SPAN && ours[0].1 != api_span,
        "{traces}"
    );
    assert!(seen.iter().any(|(t, _)| *t == fresh), "{traces}");

    // The worker's JSON log has the job's end, with its job id and trace id.
    drop(stack.workers.pop());
    let log = std::fs::read_to_string(stack.dir.join("worker-0.log")).unwrap();
    let ended: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "job ended")
        .collect();
    assert!(
        ended
            .iter()
            .any(|l| l["span"]["job_id"] == id.as_str() && l["span"]["trace_id"] == TRACE),
        "no JSON line for job {id} with trace {TRACE}:\n{log}"
    );
}
