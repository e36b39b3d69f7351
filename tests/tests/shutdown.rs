//! Graceful shutdown: SIGTERM to a worker and to an API replica in the
//! middle of a stream of submissions. Every job the API accepted ends
//! exactly once, on its first attempt, and nothing is lost, redone or
//! dead-lettered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_core::Priority;
use sluice_e2e::{acme_stack, backup_route, StackExt, StackOptions};
use sluice_queue::{AmqpQueue, JobQueue, Source, Topology};

fn chat(prompt: &str) -> Value {
    json!({"body": {"model": "mock-small", "max_tokens": 4,
                    "messages": [{"role": "user", "content": prompt}]}})
}

/// What one submitter saw: the ids the API accepted (202), and how many
/// submissions got no answer (the replica was gone) or a refusal.
#[derive(Default)]
struct Submitted {
    accepted: Vec<String>,
    unanswered: usize,
    refused: usize,
}

/// Submits jobs one at a time to `urls[0]` until `stop`; once it does not
/// answer, to the next URL.
async fn submit_stream(
    urls: Vec<String>,
    key: String,
    tag: usize,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Submitted>>,
) {
    let http = reqwest::Client::new();
    let mut target = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let prompt = format!("stream {tag} job {n}");
        let sent = http
            .post(format!("{}/v1/jobs", urls[target]))
            .bearer_auth(&key)
            .json(&chat(&prompt))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 202 => {
                let body: Value = r.json().await.expect("job json");
                let id = body["id"].as_str().expect("id").to_owned();
                out.lock().unwrap().accepted.push(id);
            }
            Ok(_) => out.lock().unwrap().refused += 1,
            Err(_) => {
                out.lock().unwrap().unanswered += 1;
                target = (target + 1).min(urls.len() - 1);
            }
        }
    }
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_mid_run_loses_and_redoes_nothing() {
    let (mut stack, client) = acme_stack(StackOptions {
        workers: 2,
        mock_args: vec!["--latency-fixed-ms".into(), "150".into()],
        // A slow provider for one job, so that a long-poll is still
        // waiting when its API replica is told to stop.
        backup_mock: Some(vec!["--latency-fixed-ms".into(), "8000".into()]),
        extra_toml: backup_route("slow", "openai", "mock-slow", &["slow"], ""),
        ..StackOptions::default()
    })
    .await;
    let (second_api, _) = stack.another_api(&client.key).await;
    let second_url = second_api.addr.clone().expect("second api address");
    let counter = stack.completions().await;

    // A stream of submissions, all to the first replica until it goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(Mutex::new(Submitted::default()));
    let submitters: Vec<_> = (0..6)
        .map(|tag| {
            tokio::spawn(submit_stream(
                vec![stack.api_url(), second_url.clone()],
                client.key.clone(),
                tag,
                Arc::clone(&stop),
                Arc::clone(&submitted),
            ))
        })
        .collect();
    // Well into the run: the workers hold jobs in every stage.
    wait_until("40 finished jobs", 60, || counter.counts().len() >= 40).await;
    // A long-poll on a job that takes 8 s at the provider.
    let slow = client
        .submit(&json!({"body": {"model": "mock-slow", "max_tokens": 4,
                                 "messages": [{"role": "user", "content": "slow"}]}}))
        .await;
    let long_poll = {
        let (client, slow) = (client.clone(), slow.clone());
        tokio::spawn(async move { client.get(&format!("/v1/jobs/{slow}?wait=60")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let worker = stack.workers.remove(0);
    let api = stack.api.take().expect("first api");
    let (worker_exit, api_exit) = tokio::join!(
        worker.terminate(Duration::from_secs(60)),
        api.terminate(Duration::from_secs(30)),
    );
    assert!(
        worker_exit.success(),
        "the worker exits cleanly: {worker_exit:?}"
    );
    assert!(api_exit.success(), "the API exits cleanly: {api_exit:?}");
    // The long-poll in flight was answered at once with the job as it
    // was, not cut off, and did not hold the API for its 60 s.
    let answered = long_poll.await.unwrap();
    assert_eq!(answered.status, 200, "{answered:?}");
    assert_eq!(answered.body["id"], slow.as_str());
    assert!(
        !sluice_e2e::is_terminal(&answered.body),
        "the slow job ended before the API stopped: {answered:?}"
    );

    // The stream goes on through the second replica for a while.
    let moved = submitted.lock().unwrap().accepted.len();
    wait_until("submissions through the second replica", 30, || {
        submitted.lock().unwrap().accepted.len() >= moved + 30
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for s in submitters {
        s.await.unwrap();
    }
    let (ids, unanswered, refused) = {
        let s = submitted.lock().unwrap();
        (s.accepted.clone(), s.unanswered, s.refused)
    };
    eprintln!(
        "{} jobs accepted, {unanswered} submissions unanswered, {refused} refused",
        ids.len()
    );
    assert_eq!(
        refused, 0,
        "no submission was refused while the API drained"
    );

    // Everything accepted ends, once, on its first attempt.
    let second = sluice_e2e::Client::new(&second_url, &client.key);
    let mut all = ids.clone();
    all.push(slow);
    for job in second.wait_all(&all, 180).await {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(
            job["attempts"], 1,
            "a job was started again after a graceful stop: {job}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.counts().len() < all.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = counter.counts();
    for id in &all {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ended {:?} times",
            counts.get(id)
        );
    }
    // No submission left a job behind that its client never heard of, and
    // no job reached the provider twice: one prompt per accepted job (the
    // slow one went to the other provider).
    let stats = stack.mock_stats().await;
    assert_eq!(
        stats["prompts"].as_u64().unwrap(),
        ids.len() as u64,
        "{stats}"
    );
    assert_eq!(
        counts.len(),
        all.len(),
        "jobs ended that no client was told of"
    );
    counter.stop().await;

    // Nothing is left in the queues, and nothing was dead-lettered.
    let queue = AmqpQueue::connect(
        &sluice_e2e::amqp_url(),
        Topology::new(stack.prefix.clone(), 5),
    )
    .await
    .expect("broker");
    for source in Priority::ALL
        .into_iter()
        .map(Source::Jobs)
        .chain([Source::DeadLetters])
    {
        assert_eq!(
            queue.depth(source).await.unwrap(),
            0,
            "{source:?} is not empty"
        );
    }
    queue.close().await;
    drop(second_api);
}
