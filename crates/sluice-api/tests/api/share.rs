//! Fair share: each job's message carries its tenant's weight and its
//! key's in-flight cap (`sluice admin tenant weight`, `sluice admin key
//! max-inflight`), for the workers to schedule by; a Batch API line
//! carries its tenant's weight and no key cap.

use futures::{FutureExt, StreamExt};
use serde_json::json;
use sluice_core::fair::Share;
use sluice_core::{JobMessage, Priority};
use sluice_queue::{JobQueue, Source};
use sluice_store::tenants::TenantStore;
use tokio_util::sync::CancellationToken;

use crate::support::files::upload_batch_input;
use crate::support::{eventually, TestApp};

fn chat(text: &str) -> serde_json::Value {
    json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": text}]}})
}

/// Takes every job message waiting on the job queues (acking each): what
/// a worker would be given, by job id.
async fn take_published(app: &TestApp) -> Vec<JobMessage> {
    let mut taken = Vec::new();
    for priority in [Priority::Interactive, Priority::Standard, Priority::Batch] {
        let stop = CancellationToken::new();
        let mut stream = app
            .memory_queue
            .consume(Source::Jobs(priority), 0, stop.clone())
            .await
            .unwrap();
        while let Some(Some(delivery)) = stream.next().now_or_never() {
            taken.push(JobMessage::decode(&delivery.body).unwrap());
            delivery.ack().await.unwrap();
        }
        stop.cancel();
    }
    taken
}

#[tokio::test]
async fn a_job_is_published_with_its_tenants_weight_and_its_keys_cap() {
    let app = TestApp::spawn().await;
    let capped = app.new_key().await;
    app.tenants
        .set_tenant_weight(&app.tenant_name, Some(3))
        .await
        .unwrap();
    app.tenants
        .set_key_max_inflight(&capped.key_id, Some(100))
        .await
        .unwrap();
    let other = app.tenant("other").await;

    let from_capped = capped.submit_ok(&chat("capped")).await;
    let from_uncapped = app.submit_ok(&chat("same tenant, no cap")).await;
    let from_other = other.submit_ok(&chat("another tenant")).await;

    let published = take_published(&app).await;
    let share_of = |id: &str| {
        published
            .iter()
            .find(|m| m.id.to_string() == id)
            .unwrap_or_else(|| panic!("{id} was not published"))
            .share
    };
    assert_eq!(
        share_of(&from_capped),
        Share {
            weight: Some(3),
            key_max_inflight: Some(100)
        }
    );
    assert_eq!(
        share_of(&from_uncapped),
        Share {
            weight: Some(3),
            key_max_inflight: None
        },
        "the weight is the tenant's, the cap its key's alone"
    );
    assert!(share_of(&from_other).is_default());
}

#[tokio::test]
async fn a_batch_apis_lines_carry_their_tenants_weight_and_no_key_cap() {
    let app = TestApp::builder()
        .toml("[batches]\npoll_ms = 20\nlease_s = 5\n")
        .spawn()
        .await;
    app.tenants
        .set_tenant_weight(&app.tenant_name, Some(2))
        .await
        .unwrap();
    app.tenants
        .set_key_max_inflight(&app.key_id, Some(1))
        .await
        .unwrap();
    let lines: Vec<String> = (0..3)
        .map(|i| {
            json!({"custom_id": format!("l{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "mock-small", "messages": [{"role": "user", "content": format!("q{i}")}]}})
            .to_string()
        })
        .collect();
    let input = upload_batch_input(&app, (lines.join("\n") + "\n").as_bytes()).await;
    app.post(
        "/v1/batches",
        &json!({"input_file_id": input, "endpoint": "/v1/chat/completions",
                "completion_window": "24h"}),
    )
    .await
    .expect(200);

    eventually("the batch's 3 lines queued", || async {
        (app.queued_jobs().await == 3).then_some(())
    })
    .await;
    let published = take_published(&app).await;
    assert_eq!(published.len(), 3);
    for line in &published {
        assert_eq!(
            line.share,
            Share {
                weight: Some(2),
                key_max_inflight: None
            }
        );
    }
}
