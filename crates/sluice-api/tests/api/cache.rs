//! The response cache at the API: exact hits, joins to an identical job
//! in flight, what stays out of it, and `DELETE /v1/cache`.

use serde_json::json;

use crate::support::{cacheable, chat, with, TestApp};

#[tokio::test]
async fn a_repeat_is_answered_from_the_cache_at_no_cost() {
    let app = TestApp::spawn_with_worker().await;
    let source = app.submit_ok(&cacheable("What is 2 + 2?")).await;
    let first = app.wait(&source).await;
    let cost = first["cost_micros"].as_u64().unwrap();
    assert!(cost > 0, "{first}");

    let hit = app.submit(&cacheable("What is 2 + 2?")).await;
    hit.expect(200);
    let id = hit.id();
    assert_ne!(id, source);
    assert_eq!(hit.header("location"), format!("/v1/jobs/{id}"));
    let job = &hit.body;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["cached"], true);
    assert_eq!(job["cost_micros"], 0);
    assert_eq!(job["result"], first["result"]);
    assert_eq!(job["usage"], first["usage"]);
    assert_eq!(
        job["cache"],
        json!({"kind": "exact", "semantic": false, "source_job": source, "saved_micros": cost})
    );
    // It is stored like any job, and no provider was called for it.
    let read = app.job(&id).await;
    read.expect(200);
    assert_eq!(read.body, hit.body);
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn the_cache_key_ignores_what_cannot_change_the_answer() {
    let app = TestApp::spawn_with_worker().await;
    let source = app
        .submit_ok(&json!({"body": {"model": "mock-small", "temperature": 0,
                  "messages": [{"role": "user", "content": "Same?"}]}}))
        .await;
    app.wait(&source).await;
    // Keys reordered, `1.0` for `1`, a `user` label: the same request.
    let same = json!({"body": {"messages": [{"content": "Same?", "role": "user"}],
                               "temperature": 0.0, "top_p": 1.0, "user": "someone",
                               "model": "mock-small"}});
    let hit = app.submit(&same).await;
    hit.expect(200);
    assert_eq!(hit.body["cache"]["source_job"], source);
    // Any other change is another request.
    let other = json!({"body": {"model": "mock-small", "temperature": 0, "max_tokens": 3,
                                "messages": [{"role": "user", "content": "Same?"}]}});
    app.submit(&other).await.expect(202);
}

#[tokio::test]
async fn an_identical_job_in_flight_is_joined_and_ends_with_its_answer() {
    let app = TestApp::spawn().await;
    let leader = app.submit_ok(&cacheable("one call please")).await;
    let joined = app.submit(&cacheable("one call please")).await;
    joined.expect(202);
    let follower = joined.id();
    assert_ne!(follower, leader);
    assert_eq!(joined.body["status"], "queued");

    app.start_worker();
    let (lead, follow) = (app.wait(&leader).await, app.wait(&follower).await);
    assert_eq!(lead["status"], "succeeded");
    assert_eq!(follow["status"], "succeeded", "{follow}");
    assert_eq!(follow["result"], lead["result"]);
    assert_eq!(follow["cached"], true);
    assert_eq!(follow["cost_micros"], 0);
    assert_eq!(follow["cache"]["kind"], "inflight");
    assert_eq!(follow["cache"]["source_job"], leader);
    assert_eq!(follow["cache"]["saved_micros"], lead["cost_micros"]);
    assert_eq!(
        app.mock.stats().total.prompts,
        1,
        "one provider call for both"
    );
}

#[tokio::test]
async fn jobs_that_joined_a_canceled_job_run_on_their_own() {
    let app = TestApp::spawn().await;
    let leader = app.submit_ok(&cacheable("the leader leaves")).await;
    let follower = app.submit_ok(&cacheable("the leader leaves")).await;
    app.cancel(&leader).await.expect(200);

    app.start_worker();
    let job = app.wait(&follower).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["cost_micros"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(app.job(&leader).await.body["status"], "canceled");
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn a_job_with_the_cache_off_stays_out_of_it() {
    let app = TestApp::spawn().await;
    let leader = app.submit_ok(&cacheable("no sharing")).await;
    let off = with(cacheable("no sharing"), "cache", json!({"mode": "off"}));
    // Not joined while the first is in flight...
    let alone = app.submit_ok(&off).await;
    app.start_worker();
    let (lead, alone) = (app.wait(&leader).await, app.wait(&alone).await);
    assert_eq!(alone["cached"], false);
    assert!(alone.get("cache").is_none(), "{alone}");
    assert_eq!(alone["cost_micros"], lead["cost_micros"]);
    // ... and not answered from the cache once it holds the answer.
    let again = app.submit(&off).await;
    again.expect(202);
    assert_eq!(app.wait(&again.id()).await["cached"], false);
    assert_eq!(app.mock.stats().total.prompts, 3);
}

#[tokio::test]
async fn a_sampled_job_is_not_cached_unless_it_asks() {
    let app = TestApp::spawn_with_worker().await;
    for _ in 0..2 {
        let id = app.submit_ok(&chat("be creative")).await;
        assert_eq!(app.wait(&id).await["cached"], false);
    }
    assert_eq!(app.mock.stats().total.prompts, 2);
    // Asking with a `cache` object opts it in.
    let asks = with(chat("be creative once"), "cache", json!({"mode": "on"}));
    let id = app.submit_ok(&asks).await;
    app.wait(&id).await;
    app.submit(&asks).await.expect(200);
    assert_eq!(app.mock.stats().total.prompts, 3);
}

#[tokio::test]
async fn a_cache_ttl_outside_the_bounds_is_refused() {
    let app = TestApp::spawn().await;
    for ttl in [0, 7 * 86_400 + 1] {
        let job = with(cacheable("x"), "cache", json!({"ttl_s": ttl}));
        app.submit(&job)
            .await
            .expect_problem(422, "invalid-request");
    }
    let semantic = with(cacheable("x"), "cache", json!({"semantic": true}));
    let reply = app.submit(&semantic).await;
    reply.expect_problem(422, "invalid-request");
    assert!(reply.detail().contains("semantic"), "{reply:?}");
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn another_tenant_never_gets_a_hit() {
    let app = TestApp::spawn_with_worker().await;
    let id = app.submit_ok(&cacheable("private answer")).await;
    app.wait(&id).await;
    let other = app.tenant("globex").await;
    let theirs = other.submit(&cacheable("private answer")).await;
    theirs.expect(202);
    assert_eq!(other.wait(&theirs.id()).await["cached"], false);
    assert_eq!(app.mock.stats().total.prompts, 2);
}

#[tokio::test]
async fn clearing_the_cache_deletes_the_tenants_answers() {
    let app = TestApp::spawn_with_worker().await;
    let id = app.submit_ok(&cacheable("forget me")).await;
    app.wait(&id).await;
    let other = app.tenant("globex").await;
    let theirs = other.submit_ok(&cacheable("keep mine")).await;
    other.wait(&theirs).await;

    // Another model's entries only: nothing of ours.
    let reply = app.delete("/v1/cache?model=mock-embed").await;
    reply.expect(200);
    assert_eq!(reply.body, json!({"deleted": 0}));
    app.submit(&cacheable("forget me")).await.expect(200);

    let reply = app.delete("/v1/cache").await;
    reply.expect(200);
    assert_eq!(reply.body["deleted"], 1);
    app.submit(&cacheable("forget me")).await.expect(202);
    // The other tenant's answers are untouched.
    other.submit(&cacheable("keep mine")).await.expect(200);
}
