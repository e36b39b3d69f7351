//! The broker or the job store failing under the API: a 503 the caller
//! can retry, and nothing accepted is lost or left looking queued.

use serde_json::json;
use sluice_core::Priority;

use crate::support::{cacheable, chat, with, QueueFault, TestApp};

#[tokio::test]
async fn an_unconfirmed_publish_is_a_503_and_its_job_is_marked_failed() {
    for fault in [QueueFault::Down, QueueFault::NoConfirm] {
        let app = TestApp::spawn().await;
        app.queue.set(fault);
        let reply = app.submit(&chat("lost in the post")).await;
        reply.expect_problem(503, "queue-unavailable");
        assert!(reply.detail().contains("retry"), "{reply:?}");
        // The record that was written first is failed, not left queued.
        let unconfirmed = app.queue.unconfirmed();
        assert_eq!(unconfirmed.len(), 1, "{fault:?}");
        let job = app.job(&unconfirmed[0]).await;
        job.expect(200);
        assert_eq!(job.body["status"], "failed", "{fault:?}: {job:?}");
        assert_eq!(job.body["error"]["type"], "enqueue_failed");
        assert_eq!(app.queued_jobs().await, 0);
        // The broker back, the same request goes through.
        app.queue.set(QueueFault::None);
        app.submit(&chat("lost in the post")).await.expect(202);
    }
}

#[tokio::test]
async fn a_batch_answers_each_job_the_broker_did_not_confirm_with_its_problem() {
    let app = TestApp::spawn().await;
    app.queue.set(QueueFault::Nack(Priority::Batch));
    let reply = app
        .batch(&[
            chat("goes through"),
            with(chat("refused"), "priority", json!("batch")),
        ])
        .await;
    reply.expect(202);
    let jobs = reply.body["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["status"], "queued");
    assert_eq!(jobs[1]["error"]["type"], "/problems/queue-unavailable");
    assert_eq!(jobs[1]["error"]["status"], 503);
    let refused = app.queue.unconfirmed();
    assert_eq!(refused.len(), 1);
    assert_eq!(app.job(&refused[0]).await.body["status"], "failed");
    assert_eq!(app.queued_jobs().await, 1);

    // When none is confirmed, the batch itself is a 503.
    let reply = app
        .batch(&[with(chat("a"), "priority", json!("batch"))])
        .await;
    reply.expect_problem(503, "queue-unavailable");
}

#[tokio::test]
async fn a_cacheable_job_whose_publish_failed_leaves_no_claim_behind() {
    let app = TestApp::spawn().await;
    app.queue.set(QueueFault::Down);
    app.submit(&cacheable("first try"))
        .await
        .expect_problem(503, "queue-unavailable");
    app.queue.set(QueueFault::None);
    // The retry leads on its own: it does not join the job that failed.
    let retry = app.submit_ok(&cacheable("first try")).await;
    app.start_worker();
    let job = app.wait(&retry).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["cached"], false);
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_a_503_and_nothing_is_published() {
    let app = TestApp::spawn().await;
    let queued = app.submit_ok(&chat("before the outage")).await;
    app.store.set_down(true);
    let reply = app.submit(&chat("during the outage")).await;
    reply.expect_problem(503, "store-unavailable");
    assert!(reply.detail().contains("retry"), "{reply:?}");
    app.batch(&[chat("a")])
        .await
        .expect_problem(503, "store-unavailable");
    app.job(&queued)
        .await
        .expect_problem(503, "store-unavailable");
    app.cancel(&queued)
        .await
        .expect_problem(503, "store-unavailable");
    app.post_with(
        "/v1/jobs",
        &chat("keyed"),
        &[("idempotency-key", "during-outage")],
    )
    .await
    .expect_problem(503, "store-unavailable");
    assert_eq!(app.queued_jobs().await, 1, "only the job from before");

    app.store.set_down(false);
    assert_eq!(app.job(&queued).await.body["status"], "queued");
    app.submit(&chat("after the outage")).await.expect(202);
}

#[tokio::test(start_paused = true)]
async fn a_request_past_the_timeout_is_a_503_and_a_retry_with_its_key_finds_its_job() {
    let app = TestApp::builder()
        .toml("[api]\nrequest_timeout_s = 2")
        .spawn()
        .await;
    let key = ("idempotency-key", "slow-store");
    let held = app.store.hold_next_create();
    let reply = app.post_with("/v1/jobs", &chat("slow store"), &[key]).await;
    reply.expect_problem(503, "timeout");
    assert!(reply.detail().contains("2 s"), "{reply:?}");
    // The store answers at last: the job that was cut short is accepted,
    // and the retry with its key answers with it instead of making another.
    held.release();
    let retry = crate::support::eventually("the retry finds the job", || async {
        let r = app.post_with("/v1/jobs", &chat("slow store"), &[key]).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(retry.header("idempotent-replayed"), "true");
    assert_eq!(app.queued_jobs().await, 1);
}
