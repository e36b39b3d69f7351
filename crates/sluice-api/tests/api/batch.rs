//! `POST /v1/jobs/batch`: all-or-nothing validation, then each job
//! answered from the cache, joined to an identical one in flight, or queued.

use serde_json::{json, Value};

use crate::support::{cacheable, chat, with, TestApp};

fn entries(reply: &crate::support::Reply) -> Vec<Value> {
    reply.body["jobs"].as_array().unwrap().clone()
}

fn id(entry: &Value) -> String {
    entry["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_batch_queues_every_job_in_order() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .batch(&[
            chat("first"),
            json!({"endpoint": "/v1/completions", "body": {"model": "mock-small", "prompt": "second"}}),
            with(chat("third"), "priority", json!("batch")),
        ])
        .await;
    reply.expect(202);
    assert_eq!(reply.body["object"], "list");
    let jobs = entries(&reply);
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[1]["endpoint"], "/v1/completions");
    assert_eq!(jobs[2]["priority"], "batch");
    let ids: Vec<String> = jobs.iter().map(id).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(jobs[i]["status"], "queued");
        assert_eq!(app.wait(id).await["status"], "succeeded");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "distinct ids: {ids:?}");
}

#[tokio::test]
async fn one_invalid_job_refuses_the_whole_batch_and_names_it() {
    let app = TestApp::spawn().await;
    let reply = app
        .batch(&[
            chat("fine"),
            chat("fine too"),
            json!({"body": {"model": "gpt-nope", "messages": [{"role": "user", "content": "x"}]}}),
        ])
        .await;
    reply.expect_problem(422, "invalid-request");
    assert!(reply.detail().contains("jobs[2]"), "{reply:?}");
    assert!(reply.detail().contains("gpt-nope"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0, "nothing was queued");

    let reply = app
        .batch(&[with(chat("x"), "deadline_s", json!(-1)), chat("y")])
        .await;
    reply.expect_problem(422, "invalid-request");
    assert!(reply.detail().contains("jobs[0]"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn a_batch_must_hold_one_to_max_batch_jobs_jobs() {
    let app = TestApp::builder()
        .toml("[api]\nmax_batch_jobs = 2")
        .spawn()
        .await;
    app.batch(&[]).await.expect_problem(422, "invalid-request");
    let reply = app.batch(&[chat("a"), chat("b"), chat("c")]).await;
    reply.expect_problem(422, "invalid-request");
    assert!(reply.detail().contains("1 to 2"), "{reply:?}");
    for body in [json!({"jobs": "all of them"}), json!({"work": []})] {
        let reply = app.post("/v1/jobs/batch", &body).await;
        reply.expect_problem(422, "invalid-request");
    }
    app.batch(&[chat("a"), chat("b")]).await.expect(202);
}

#[tokio::test]
async fn identical_jobs_within_a_batch_make_one_provider_call() {
    let app = TestApp::spawn().await;
    let reply = app
        .batch(&[
            cacheable("same question"),
            cacheable("same question"),
            cacheable("other question"),
        ])
        .await;
    reply.expect(202);
    let ids: Vec<String> = entries(&reply).iter().map(id).collect();
    assert_ne!(ids[0], ids[1]);
    app.start_worker();
    let (first, second, other) = (
        app.wait(&ids[0]).await,
        app.wait(&ids[1]).await,
        app.wait(&ids[2]).await,
    );
    for job in [&first, &second, &other] {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    assert_eq!(second["result"], first["result"]);
    assert_ne!(other["result"], first["result"]);
    assert_eq!(second["cache"]["kind"], "inflight", "{second}");
    assert_eq!(second["cache"]["source_job"], ids[0]);
    assert_eq!(second["cost_micros"], 0);
    assert_eq!(
        app.mock.stats().total.prompts,
        2,
        "one call per distinct job"
    );
}

#[tokio::test]
async fn a_batch_mixes_cache_hits_joins_and_new_jobs() {
    let app = TestApp::spawn_with_worker().await;
    let answered = app.submit_ok(&cacheable("answered before")).await;
    let answer = app.wait(&answered).await;
    app.stop_worker().await;
    let in_flight = app.submit_ok(&cacheable("in flight")).await;

    let reply = app
        .batch(&[
            cacheable("answered before"),
            cacheable("in flight"),
            cacheable("brand new"),
        ])
        .await;
    reply.expect(202);
    let jobs = entries(&reply);
    // The hit is finished in the answer itself.
    assert_eq!(jobs[0]["status"], "succeeded", "{:?}", jobs[0]);
    assert_eq!(jobs[0]["cached"], true);
    assert_eq!(jobs[0]["cost_micros"], 0);
    assert_eq!(jobs[0]["cache"]["kind"], "exact");
    assert_eq!(jobs[0]["cache"]["source_job"], answered);
    assert_eq!(jobs[0]["result"], answer["result"]);
    // The join and the new job wait for a worker.
    assert_eq!(jobs[1]["status"], "queued");
    assert_ne!(id(&jobs[1]), in_flight);
    assert_eq!(jobs[2]["status"], "queued");

    app.start_worker();
    let leader = app.wait(&in_flight).await;
    let joined = app.wait(&id(&jobs[1])).await;
    assert_eq!(joined["status"], "succeeded", "{joined}");
    assert_eq!(joined["result"], leader["result"]);
    assert_eq!(joined["cache"]["kind"], "inflight");
    assert_eq!(joined["cache"]["source_job"], in_flight);
    assert_eq!(app.wait(&id(&jobs[2])).await["cached"], false);
    assert_eq!(
        app.mock.stats().total.prompts,
        3,
        "answered, in flight, brand new"
    );
}

#[tokio::test]
async fn a_batch_refuses_a_webhook_the_policy_refuses_and_names_the_job() {
    let app = TestApp::spawn().await;
    app.post_raw("/v1/webhook-secret", "").await.expect(201);
    let hooked = with(
        chat("x"),
        "webhook",
        json!({"url": "http://169.254.169.254/latest"}),
    );
    let reply = app.batch(&[chat("ok"), hooked]).await;
    assert_eq!(reply.status, 422, "{reply:?}");
    assert!(reply.detail().contains("jobs[1]"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0);
}
