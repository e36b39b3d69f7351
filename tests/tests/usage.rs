//! The usage ledger: one row per finished job, reported per tenant, and
//! its costs equal the provider's bill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_e2e::{Client, Stack, StackExt, StackOptions};

/// Polls the report until it counts `jobs` jobs (the ledger row lands just
/// after the job's result).
pub async fn usage_with(client: &Client, query: &str, jobs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(&format!("/v1/usage{query}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        if r.body["total"]["jobs"].as_u64() == Some(jobs) || Instant::now() > deadline {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_ledger_reports_each_tenants_usage_and_matches_the_bill() {
    let stack = Stack::start(StackOptions {
        mock_args: vec!["--price".into(), "mock-small=1000003:100003:4000003".into()],
        extra_toml: "[[prices]]\nprovider = \"mock\"\nmodel = \"mock-small\"\ninput = 1000003\ncached_input = 100003\noutput = 4000003\n".into(),
        ..StackOptions::default()
    })
    .await;
    let alice = stack.tenant("alice").await;
    let bob = stack.tenant("bob").await;
    let job = |i: usize, feature: &str| {
        json!({"metadata": {"feature": feature, "route": "/ask"}, "body": {"model": "mock-small", "max_tokens": 3 + i % 5,
            "messages": [{"role": "user", "content": format!("question number {i}")}]}})
    };
    let a_ids = alice
        .submit_batch(
            (0..30)
                .map(|i| job(i, if i % 3 == 0 { "search" } else { "chat" }))
                .collect(),
        )
        .await;
    let b_ids = bob
        .submit_batch((0..12).map(|i| job(i, "chat")).collect())
        .await;
    let mut cost = 0;
    for j in alice
        .wait_all(&a_ids, 60)
        .await
        .iter()
        .chain(bob.wait_all(&b_ids, 60).await.iter())
    {
        cost += j["cost_micros"].as_u64().unwrap();
    }

    let a = usage_with(&alice, "?group_by=feature,model,day", 30).await;
    let b = usage_with(&bob, "", 12).await;
    assert_eq!(a["total"]["jobs"], 30, "{a}");
    assert_eq!(b["total"]["jobs"], 12, "{b}");
    let features: Vec<(&str, u64)> = a["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["group"]["feature"].as_str().unwrap(),
                l["jobs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(features, vec![("chat", 20), ("search", 10)]);
    // Whole days are read from the daily totals: the same figures.
    let month = &a["from"].as_str().unwrap()[..10];
    let days = usage_with(
        &alice,
        &format!("?from={month}&to=2100-01-01&group_by=feature"),
        30,
    )
    .await;
    assert_eq!(
        days["total"], a["total"],
        "daily totals vs the ledger: {days}"
    );
    assert_eq!(days["data"].as_array().unwrap().len(), 2, "{days}");
    let ledger =
        a["total"]["cost_micros"].as_u64().unwrap() + b["total"]["cost_micros"].as_u64().unwrap();
    assert_eq!(ledger, cost);
    assert_eq!(
        ledger,
        stack.mock_bill().await["total_cost_micros"]
            .as_u64()
            .unwrap()
    );

    // Operators see every tenant; the CSV and JSON forms agree.
    let out = stack
        .sluice(&["admin", "usage", "--group-by", "tenant", "--format", "json"])
        .await;
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["total"]["jobs"], 42);
    assert_eq!(all["total"]["cost_micros"].as_u64().unwrap(), ledger);
    let csv = stack
        .sluice(&[
            "admin",
            "usage",
            "--tenant",
            "alice",
            "--group-by",
            "feature",
            "--format",
            "csv",
        ])
        .await;
    assert!(csv.lines().any(|l| l.starts_with("search,10,")), "{csv}");
    let table = stack.sluice(&["admin", "usage", "--tenant", "bob"]).await;
    assert!(table.contains("TOTAL"), "{table}");

    // Bad input.
    let r = alice.get("/v1/usage?group_by=colour").await;
    assert_eq!(
        (r.status, r.body["type"].as_str()),
        (422, Some("/problems/invalid-request"))
    );
    let r = alice.get("/v1/usage?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = alice.get("/v1/usage?group_by=tenant").await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = alice.get("/v1/usage?from=yesterday").await;
    assert_eq!(r.status, 422, "{r:?}");
    // An empty range is an empty report, not someone else's data.
    let r = alice.get("/v1/usage?from=2020-01-01&to=2020-02-01").await;
    assert_eq!(r.body["total"]["jobs"], 0, "{r:?}");
}

#[tokio::test]
async fn a_tenant_at_its_budget_gets_402_and_another_does_not() {
    let stack = Stack::start(StackOptions {
        mock_args: vec!["--price".into(), "mock-small=1000000:100000:4000000".into()],
        extra_toml: "[[prices]]\nprovider = \"mock\"\nmodel = \"mock-small\"\ninput = 1000000\ncached_input = 100000\noutput = 4000000\n".into(),
        ..StackOptions::default()
    })
    .await;
    let thrifty = stack.tenant("thrifty").await;
    let rich = stack.tenant("rich").await;
    let out = stack
        .sluice(&[
            "admin",
            "tenant",
            "budget",
            "thrifty",
            "--monthly-micros",
            "50",
        ])
        .await;
    assert!(out.contains("50 micro-dollars"), "{out}");
    let chat = |i: usize| json!({"body": {"model": "mock-small", "max_tokens": 20, "messages": [{"role": "user", "content": format!("q {i}")}]}});

    // Each job costs about 80 µ$: the first gets in, then the cap is spent.
    let first = thrifty.submit(&chat(0)).await;
    let done = thrifty.wait(&first, 30).await;
    let cost = done["cost_micros"].as_u64().unwrap();
    assert!(cost >= 50, "{done}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let r = thrifty.post("/v1/jobs", &chat(1)).await;
        if r.status == 402 {
            break r;
        }
        assert_eq!(r.status, 202, "{r:?}");
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(refused.body["type"], "/problems/budget-exhausted");
    assert!(
        refused.body["detail"].as_str().unwrap().contains("50"),
        "{refused:?}"
    );
    let budget = thrifty.get("/v1/budget").await.body;
    assert_eq!(budget["budget_micros"], 50);
    assert!(budget["spent_micros"].as_u64().unwrap() >= cost, "{budget}");
    assert_eq!(budget["remaining_micros"], 0);

    // Another tenant is not refused.
    let id = rich.submit(&chat(2)).await;
    assert_eq!(rich.wait(&id, 30).await["status"], "succeeded");
    assert_eq!(
        rich.get("/v1/budget").await.body["budget_micros"],
        Value::Null
    );

    // A key's own cap stops that key, not the tenant's other keys.
    let out = stack
        .sluice(&[
            "admin", "key", "create", "--tenant", "rich", "--name", "intern",
        ])
        .await;
    let intern = Client::new(&stack.api_url(), out.lines().last().unwrap().trim());
    let listed = stack
        .sluice(&["admin", "key", "list", "--tenant", "rich"])
        .await;
    let intern_id = listed
        .lines()
        .find(|l| l.contains("intern"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    stack
        .sluice(&[
            "admin",
            "key",
            "budget",
            &intern_id,
            "--monthly-micros",
            "50",
        ])
        .await;
    let id = intern.submit(&chat(3)).await;
    intern.wait(&id, 30).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = intern.post("/v1/jobs", &chat(4)).await;
        if r.status == 402 {
            assert!(
                r.body["detail"].as_str().unwrap().contains("API key"),
                "{r:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key's cap never applied: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let id = rich.submit(&chat(5)).await;
    assert_eq!(rich.wait(&id, 30).await["status"], "succeeded");
}
