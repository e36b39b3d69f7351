//! `POST /v1/jobs`, `GET /v1/jobs/{id}` (with `?wait=`) and
//! `POST /v1/jobs/{id}/cancel`.

use std::time::Duration;

use serde_json::json;
use sluice_core::Priority;
use sluice_queue::{JobQueue, Source};

use crate::support::{chat, with, TestApp};

#[tokio::test]
async fn a_submitted_job_is_accepted_queued_and_readable() {
    let app = TestApp::spawn().await;
    let job = with(
        with(chat("Hello"), "metadata", json!({"feature": "greeting"})),
        "priority",
        json!("interactive"),
    );
    let reply = app.submit(&job).await;
    reply.expect(202);
    let id = reply.id();
    assert_eq!(id.len(), 26, "a ULID: {id}");
    assert_eq!(reply.header("location"), format!("/v1/jobs/{id}"));
    assert_eq!(reply.body["object"], "job");
    assert_eq!(reply.body["status"], "queued");
    assert_eq!(reply.body["endpoint"], "/v1/chat/completions");
    assert_eq!(reply.body["model"], "mock-small");
    assert_eq!(reply.body["priority"], "interactive");
    assert_eq!(reply.body["metadata"]["feature"], "greeting");
    assert_eq!(
        reply.body["links"]["cancel"],
        format!("/v1/jobs/{id}/cancel")
    );

    // The broker has it, in the queue of its priority class.
    let depth = app.queue.depth(Source::Jobs(Priority::Interactive)).await;
    assert_eq!(depth.unwrap(), 1);

    let read = app.job(&id).await;
    read.expect(200);
    assert_eq!(read.body["id"], id);
    assert_eq!(read.body["status"], "queued");
    assert_eq!(read.body["created_at"], reply.body["created_at"]);
}

/// The ids of `n` jobs submitted one after another, with their `created_at`.
async fn submit_in_turn(app: &TestApp, n: usize) -> Vec<(String, String)> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let reply = app.submit(&chat(&format!("job {i}"))).await;
        reply.expect(202);
        let created = reply.body["created_at"].as_str().unwrap().to_owned();
        jobs.push((reply.id(), created));
    }
    jobs
}

#[tokio::test]
async fn job_ids_sort_by_creation_time_to_the_millisecond() {
    let app = TestApp::spawn().await;
    let jobs = submit_in_turn(&app, 20).await;
    // A ULID's first 10 characters are its millisecond timestamp.
    let stamps: Vec<&str> = jobs.iter().map(|(id, _)| &id[..10]).collect();
    let mut sorted = stamps.clone();
    sorted.sort_unstable();
    assert_eq!(stamps, sorted);
    for (id, created) in &jobs {
        let ulid_ms = ulid_millis(id);
        let created_ms = chrono::DateTime::parse_from_rfc3339(created)
            .unwrap()
            .timestamp_millis();
        // The id is made just after the job's `created_at` is taken.
        assert!(
            (0..1_000).contains(&(ulid_ms - created_ms)),
            "{id} {created}"
        );
    }
}

#[tokio::test]
async fn job_ids_sort_in_submission_order() {
    let app = TestApp::spawn().await;
    let ids: Vec<String> = submit_in_turn(&app, 50)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

/// The millisecond timestamp a ULID carries (Crockford base32).
fn ulid_millis(id: &str) -> i64 {
    const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    id[..10]
        .chars()
        .fold(0, |ms, c| ms * 32 + ALPHABET.find(c).unwrap() as i64)
}

#[tokio::test]
async fn a_job_runs_to_its_end_with_the_providers_answer_usage_and_cost() {
    let app = TestApp::spawn_with_worker().await;
    let id = app.submit_ok(&chat("What is Sluice?")).await;
    let job = app.wait(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let content = job["result"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        content.starts_with(&sluice_mock::answer_text("What is Sluice?")),
        "{content}"
    );
    assert_eq!(job["usage"]["completion_tokens"], 16);
    assert!(job["cost_micros"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(job["provider"], "mock");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["cached"], false);
    assert!(job["finished_at"].is_string());
}

#[tokio::test]
async fn completions_and_embeddings_jobs_run_too() {
    let app = TestApp::spawn_with_worker().await;
    let completion = app
        .submit_ok(&json!({"endpoint": "/v1/completions",
                           "body": {"model": "mock-small", "prompt": "Once upon"}}))
        .await;
    let embedding = app
        .submit_ok(&json!({"endpoint": "/v1/embeddings",
                           "body": {"model": "mock-embed", "input": "vector me"}}))
        .await;
    let completion = app.wait(&completion).await;
    assert_eq!(completion["status"], "succeeded", "{completion}");
    assert_eq!(completion["endpoint"], "/v1/completions");
    assert!(completion["result"]["choices"][0]["text"].is_string());
    let embedding = app.wait(&embedding).await;
    assert_eq!(embedding["status"], "succeeded", "{embedding}");
    let vector = embedding["result"]["data"][0]["embedding"]
        .as_array()
        .unwrap();
    assert_eq!(vector.len(), 16);
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_is_woken_by_the_jobs_end() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("wait for me")).await;
    let started = tokio::time::Instant::now();
    let poll = {
        let (client, id) = (app.clone(), id.clone());
        app.background(async move { client.get(&format!("/v1/jobs/{id}?wait=60")).await })
    };
    // The clock only moves once every task waits: the poll is parked.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !poll.is_finished(),
        "the poll answered before the job ended"
    );
    app.cancel(&id).await.expect(200);
    let reply = poll.await.unwrap();
    reply.expect(200);
    assert_eq!(reply.body["status"], "canceled");
    // Woken by the end, not by its 5-second re-read (paused clock: exact).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_long_poll_answers_when_the_worker_ends_the_job() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("run me later")).await;
    let poll = {
        let (client, id) = (app.clone(), id.clone());
        app.background(async move { client.get(&format!("/v1/jobs/{id}?wait=30")).await })
    };
    app.start_worker();
    let reply = poll.await.unwrap();
    reply.expect(200);
    assert_eq!(reply.body["status"], "succeeded", "{reply:?}");
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_answers_with_the_job_as_it_is_when_the_wait_is_over() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("nobody runs me")).await;
    let started = tokio::time::Instant::now();
    let reply = app.get(&format!("/v1/jobs/{id}?wait=2.5")).await;
    reply.expect(200);
    assert_eq!(reply.body["status"], "queued");
    assert!(started.elapsed() >= Duration::from_millis(2_500));
    // No wait at all reads at once.
    let started = tokio::time::Instant::now();
    app.get(&format!("/v1/jobs/{id}?wait=0")).await.expect(200);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn a_wait_longer_than_the_limit_is_refused() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("x")).await;
    for wait in ["61", "-1", "NaN", "soon"] {
        let reply = app.get(&format!("/v1/jobs/{id}?wait={wait}")).await;
        reply.expect_problem(422, "invalid-request");
    }
}

#[tokio::test]
async fn a_job_still_queued_at_its_deadline_expires_without_reaching_a_provider() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(&with(chat("too late"), "deadline_s", json!(0.05)))
        .await;
    let job = app.wait(&id).await;
    assert_eq!(job["status"], "expired", "{job}");
    assert_eq!(job["error"]["type"], "deadline_exceeded");
    assert!(job["deadline_at"].is_string());
    // A worker that takes it afterwards does not call the provider.
    app.start_worker();
    let other = app.submit_ok(&chat("in time")).await;
    assert_eq!(app.wait(&other).await["status"], "succeeded");
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn another_tenants_job_is_not_found() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("mine")).await;
    let other = app.tenant("globex").await;
    other.job(&id).await.expect_problem(404, "job-not-found");
    other
        .get(&format!("/v1/jobs/{id}?wait=1"))
        .await
        .expect_problem(404, "job-not-found");
    other.cancel(&id).await.expect_problem(404, "job-not-found");
    // Still queued for its owner.
    assert_eq!(app.job(&id).await.body["status"], "queued");
}

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_not_found() {
    let app = TestApp::spawn().await;
    for id in ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "not-an-id"] {
        let reply = app.job(id).await;
        reply.expect_problem(404, "job-not-found");
        assert!(reply.detail().contains(id), "{reply:?}");
        app.cancel(id).await.expect_problem(404, "job-not-found");
    }
}

#[tokio::test]
async fn a_canceled_job_never_reaches_a_provider() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("cancel me")).await;
    let reply = app.cancel(&id).await;
    reply.expect(200);
    assert_eq!(reply.body["id"], id);
    assert_eq!(reply.body["status"], "canceled");
    assert!(reply.body["finished_at"].is_string());
    assert_eq!(app.job(&id).await.body["status"], "canceled");

    app.start_worker();
    let other = app.submit_ok(&chat("run me")).await;
    assert_eq!(app.wait(&other).await["status"], "succeeded");
    assert_eq!(app.job(&id).await.body["status"], "canceled");
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn only_a_queued_job_can_be_canceled() {
    let app = TestApp::spawn_with_worker().await;
    let done = app.submit_ok(&chat("finish first")).await;
    assert_eq!(app.wait(&done).await["status"], "succeeded");
    let reply = app.cancel(&done).await;
    reply.expect_problem(409, "not-cancelable");
    assert!(reply.detail().contains("succeeded"), "{reply:?}");
    assert_eq!(app.job(&done).await.body["status"], "succeeded");
}

#[tokio::test]
async fn a_job_is_canceled_once() {
    let app = TestApp::spawn().await;
    let id = app.submit_ok(&chat("cancel me twice")).await;
    app.cancel(&id).await.expect(200);
    let again = app.cancel(&id).await;
    again.expect_problem(409, "not-cancelable");
    assert!(again.detail().contains("canceled"), "{again:?}");
}
