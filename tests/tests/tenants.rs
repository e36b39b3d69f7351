//! Per-tenant rate limits hold across API replicas, and one tenant over
//! its limit does not stop another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sluice_e2e::{acme_stack, Stack, StackExt, StackOptions};

fn chat(i: usize) -> serde_json::Value {
    json!({"body": {"model": "mock-small", "max_tokens": 2, "messages": [{"role": "user", "content": format!("hi {i}")}]}})
}

#[tokio::test]
async fn a_tenant_over_its_limit_gets_429_on_every_replica_and_others_do_not() {
    let stack = Stack::start(StackOptions::default()).await;
    let flood = stack.tenant("flood").await;
    let calm = stack.tenant("calm").await;
    let out = stack
        .sluice(&[
            "admin",
            "tenant",
            "limits",
            "flood",
            "--requests-per-minute",
            "10",
        ])
        .await;
    assert!(out.contains("10 jobs/min"), "{out}");
    let (_replica, flood_b) = stack.another_api(&flood.key).await;

    // Twenty jobs, alternating between two replicas: ten get in.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for i in 0..20 {
        let client = if i % 2 == 0 { &flood } else { &flood_b };
        let r = client.post("/v1/jobs", &chat(i)).await;
        match r.status {
            202 => accepted.push(r.body["id"].as_str().unwrap().to_owned()),
            429 => refused.push(r),
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    assert_eq!(accepted.len(), 10, "one limit across both replicas");
    let r = &refused[0];
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.body["type"], "/problems/rate-limited");
    let header = |name: &str| {
        r.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {r:?}"))
            .clone()
    };
    assert_eq!(header("ratelimit-limit"), "10");
    assert_eq!(header("ratelimit-remaining"), "0");
    let reset: u64 = header("ratelimit-reset").parse().unwrap();
    let retry: u64 = header("retry-after").parse().unwrap();
    assert!(
        (1..=61).contains(&reset) && (1..=61).contains(&retry),
        "{reset} {retry}"
    );

    // The other tenant is not limited, and the flood's accepted jobs run.
    let calm_ids: Vec<String> = futures::future::join_all((0..10).map(|i| {
        let calm = calm.clone();
        async move { calm.submit(&chat(100 + i)).await }
    }))
    .await;
    for job in calm.wait_all(&calm_ids, 30).await {
        assert_eq!(job["status"], "succeeded");
    }
    for job in flood.wait_all(&accepted, 30).await {
        assert_eq!(job["status"], "succeeded");
    }
    // A batch larger than the whole limit says so.
    let big = flood
        .post(
            "/v1/jobs/batch",
            &json!({"jobs": (0..11).map(chat).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(big.status, 429);
    assert!(
        big.body["detail"].as_str().unwrap().contains("more than"),
        "{big:?}"
    );
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_seconds_and_keys_are_stored_hashed() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let id = acme.submit(&chat(1)).await;
    assert_eq!(acme.wait(&id, 30).await["status"], "succeeded");

    let listed = stack
        .sluice(&["admin", "key", "list", "--tenant", "acme"])
        .await;
    let key_id = listed.split_whitespace().next().unwrap().to_owned();
    assert!(
        !listed.contains(&acme.key),
        "the list never shows a key: {listed}"
    );
    // Piped into a reader that has gone (`| head`), the listing ends
    // cleanly instead of panicking on the closed pipe.
    let piped = stack
        .sluice_into_closed_pipe(&["admin", "key", "list", "--tenant", "acme"])
        .await;
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The table holds a hash, never the key.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&stack.database_url())
        .await
        .unwrap();
    let (hash,): (String,) = sqlx::query_as("SELECT key_hash FROM api_keys")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_ne!(hash, acme.key);
    assert!(!hash.contains(&acme.key[10..]));

    let out = stack.sluice(&["admin", "key", "revoke", &key_id]).await;
    assert!(out.contains("revoked"), "{out}");
    let started = std::time::Instant::now();
    loop {
        let r = acme.job(&id).await;
        if r.status == 401 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the revoked key still works: {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let listed = stack
        .sluice(&["admin", "key", "list", "--tenant", "acme"])
        .await;
    assert!(listed.contains("REVOKED"), "{listed}");

    // A key past its expiry does not work; one before it does.
    let args = [
        "admin",
        "key",
        "create",
        "--tenant",
        "acme",
        "--expires-in-days",
    ];
    let out = stack.sluice(&[&args[..], &["0"]].concat()).await;
    let expired = sluice_e2e::Client::new(&stack.api_url(), out.lines().last().unwrap().trim());
    assert_eq!(expired.job(&id).await.status, 401);
    let out = stack.sluice(&[&args[..], &["30"]].concat()).await;
    assert!(out.contains("expires at"), "{out}");
    let fresh = sluice_e2e::Client::new(&stack.api_url(), out.lines().last().unwrap().trim());
    assert_eq!(fresh.job(&id).await.status, 200);
}

#[tokio::test]
async fn fair_share_settings_are_set_shown_and_refused_when_out_of_range() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let out = stack
        .sluice(&["admin", "tenant", "weight", "acme", "3"])
        .await;
    assert!(out.contains("fair-share weight 3"), "{out}");
    let out = stack
        .sluice(&[
            "admin",
            "key",
            "create",
            "--tenant",
            "acme",
            "--name",
            "pipeline",
            "--max-inflight",
            "2",
        ])
        .await;
    assert!(out.contains("at most 2 jobs in flight"), "{out}");
    let capped = sluice_e2e::Client::new(&stack.api_url(), out.lines().last().unwrap().trim());

    // Jobs of the weighted tenant and the capped key run as before.
    let ids = [capped.submit(&chat(1)).await, acme.submit(&chat(2)).await];
    for job in acme.wait_all(&ids, 30).await {
        assert_eq!(job["status"], "succeeded");
    }

    // Bad values: a non-zero exit and one line that says why.
    for args in [
        &["admin", "tenant", "weight", "acme", "0"][..],
        &["admin", "tenant", "weight", "acme", "1001"],
        &["admin", "tenant", "weight", "nobody", "2"],
        &["admin", "key", "max-inflight", "not-a-key", "3"],
        &[
            "admin",
            "key",
            "create",
            "--tenant",
            "acme",
            "--max-inflight",
            "0",
        ],
    ] {
        let why = stack.sluice_fails(args).await;
        let first = why.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {why}");
    }

    // Left out, each is removed.
    let out = stack.sluice(&["admin", "tenant", "weight", "acme"]).await;
    assert!(out.contains("weight 1 (the default)"), "{out}");
    let listed = stack
        .sluice(&["admin", "key", "list", "--tenant", "acme"])
        .await;
    let pipeline = listed
        .lines()
        .find(|l| l.contains("pipeline"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let out = stack
        .sluice(&["admin", "key", "max-inflight", &pipeline])
        .await;
    assert!(out.contains("no cap on jobs in flight"), "{out}");
}
