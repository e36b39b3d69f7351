//! Every cost figure is traceable to what the provider billed: the jobs'
//! costs sum to the mock provider's own bill, to the micro-dollar.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, backup_route, Price, StackOptions, ODD_PRICE};

const EMBED: Price = Price {
    model: "mock-embed",
    input: 20_011,
    cached_input: 0,
    output: 0,
};

#[tokio::test]
async fn the_jobs_costs_sum_to_the_providers_bill_exactly() {
    // Odd prices, so that rounding matters; the mock's prefix cache on.
    let prices = [ODD_PRICE, EMBED];
    let (stack, client) = acme_stack(StackOptions {
        mock_args: std::iter::once("--prefix-cache".into())
            .chain(prices.iter().flat_map(Price::mock_flags))
            .collect(),
        extra_toml: prices.iter().map(|p| p.toml("mock")).collect(),
        ..StackOptions::default()
    })
    .await;
    let system = "You are a careful assistant. ".repeat(40);
    let template =
        "Classify the following support ticket into one of billing, bugs, sales or other. "
            .repeat(8);

    let mut ids = Vec::new();
    // Two rounds, so that the second finds the shared prefixes cached.
    for round in 0..2 {
        let chats: Vec<Value> = (0..12)
            .map(|i| {
                json!({"body": {"model": "mock-small", "max_tokens": 7 + i, "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": format!("question {round}-{i}")}]}})
            })
            .collect();
        let completions: Vec<Value> = (0..20)
            .map(|i| json!({"endpoint": "/v1/completions",
                "body": {"model": "mock-small", "max_tokens": 9, "prompt": format!("{template} Ticket {round}-{i}: it broke {}", "!".repeat(i))}}))
            .collect();
        let embeddings: Vec<Value> = (0..10)
            .map(|i| json!({"endpoint": "/v1/embeddings", "body": {"model": "mock-embed", "input": format!("text {round} {i} {}", "x".repeat(i * 5))}}))
            .collect();
        let batch = client
            .submit_batch(
                chats
                    .into_iter()
                    .chain(completions)
                    .chain(embeddings)
                    .collect(),
            )
            .await;
        // Finish the round before the next, so its prefixes are cached.
        client.wait_all(&batch, 60).await;
        ids.extend(batch);
    }
    let jobs = client.wait_all(&ids, 60).await;
    let mut sluice_total: u64 = 0;
    let mut cached: u64 = 0;
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
        sluice_total += job["cost_micros"]
            .as_u64()
            .unwrap_or_else(|| panic!("no cost on {job}"));
        cached += job["usage"]["cached_tokens"].as_u64().unwrap();
    }
    let bill = stack.mock_bill().await;
    assert_eq!(
        sluice_total,
        bill["total_cost_micros"].as_u64().unwrap(),
        "Sluice's costs vs the bill {bill}"
    );
    assert!(
        cached > 0,
        "the run should have hit the provider's prefix cache"
    );
    let billed_cached: u64 = bill["by_model"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["cached_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(cached, billed_cached, "{bill}");
    // Completions went out batched, so some calls' costs were split.
    let stats = stack.mock_stats().await;
    assert!(
        stats["by_endpoint"]["/v1/completions"]["requests"]
            .as_u64()
            .unwrap()
            < 40,
        "{stats}"
    );
}

#[tokio::test]
async fn the_anthropic_adapter_answers_caches_and_costs_like_the_bill() {
    let claude = Price {
        model: "claude-mock",
        input: 3_000_000,
        cached_input: 300_000,
        output: 15_000_000,
    };
    let (stack, client) = acme_stack(StackOptions {
        backup_mock: Some(
            std::iter::once("--prefix-cache".into())
                .chain(claude.mock_flags())
                .collect(),
        ),
        extra_toml: backup_route("anthropic", "anthropic", "claude-mock", &["anthropic"], "")
            + &claude.toml("anthropic"),
        ..StackOptions::default()
    })
    .await;
    let system = "You answer questions about the Sluice queue, briefly and exactly. ".repeat(30);
    let mut jobs = Vec::new();
    for round in 0..2 {
        let ids = client
            .submit_batch(
                (0..6)
                    .map(|i| json!({"body": {"model": "claude-mock", "max_tokens": 12, "stop": ["END"], "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": format!("question {round}-{i}")}]}}))
                    .collect(),
            )
            .await;
        jobs.extend(client.wait_all(&ids, 60).await);
    }
    let mut total = 0;
    for (n, job) in jobs.iter().enumerate() {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["provider"], "anthropic");
        let (round, i) = (n / 6, n % 6);
        let text = job["result"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert!(
            text.starts_with(&sluice_mock::answer_text(&format!("question {round}-{i}"))),
            "{job}"
        );
        assert_eq!(job["result"]["object"], "chat.completion");
        assert_eq!(job["usage"]["completion_tokens"], 12);
        total += job["cost_micros"].as_u64().unwrap();
    }
    // The shared system prompt was written to the cache, then read from it.
    let written: u64 = jobs
        .iter()
        .map(|j| j["usage"]["cache_write_tokens"].as_u64().unwrap())
        .sum();
    let read: u64 = jobs[6..]
        .iter()
        .map(|j| j["usage"]["cached_tokens"].as_u64().unwrap())
        .sum();
    assert!(written > 0 && read > 0, "written {written}, read {read}");
    let bill = stack.backup_bill().await;
    assert_eq!(total, bill["total_cost_micros"].as_u64().unwrap(), "{bill}");
}

#[tokio::test]
async fn costs_still_match_the_bills_when_a_fallback_serves_part_of_the_run() {
    let price = Price {
        model: "mock-small",
        input: 2_000_003,
        cached_input: 200_003,
        output: 8_000_003,
    };
    let flags: Vec<String> = price
        .mock_flags()
        .into_iter()
        .chain(["--prefix-cache".into()])
        .collect();
    let (stack, client) = acme_stack(StackOptions {
        mock_args: flags.clone(),
        backup_mock: Some(flags),
        worker_toml:
            "max_wait_ms = { interactive = 5, standard = 20, batch = 50 }\nprovider_attempts = 1"
                .into(),
        extra_toml: backup_route(
            "backup",
            "openai",
            "mock-ha",
            &["mock", "backup"],
            "upstream_model = \"mock-small\"",
        ) + &price.toml("mock")
            + &price.toml("backup"),
        ..StackOptions::default()
    })
    .await;
    let template = "Summarise this customer message in one line, politely and exactly. ".repeat(6);
    let round = |r: usize| -> Vec<Value> {
        (0..16)
            .map(|i| json!({"endpoint": "/v1/completions", "body": {"model": "mock-ha", "max_tokens": 5,
                "prompt": format!("{template} Message {r}-{i}: {}", "?".repeat(i))}}))
            .chain((0..8).map(|i| json!({"body": {"model": "mock-ha", "max_tokens": 4 + i,
                "messages": [{"role": "system", "content": template}, {"role": "user", "content": format!("hi {r}-{i}")}]}})))
            .collect()
    };
    let first = client.submit_batch(round(0)).await;
    let mut jobs = client.wait_all(&first, 60).await;
    // The primary goes down: the second round is served by the backup.
    reqwest::Client::new()
        .post(format!("{}/mock/admin/down", stack.mock_url()))
        .send()
        .await
        .unwrap();
    let second = client.submit_batch(round(1)).await;
    jobs.extend(client.wait_all(&second, 60).await);

    let mut by_provider = std::collections::HashMap::<String, u64>::new();
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
        *by_provider
            .entry(job["provider"].as_str().unwrap().to_owned())
            .or_default() += job["cost_micros"].as_u64().unwrap();
    }
    assert_eq!(
        by_provider.len(),
        2,
        "both providers served part of the run: {by_provider:?}"
    );
    let primary = stack.mock_bill().await;
    let backup = stack.backup_bill().await;
    assert_eq!(
        by_provider["mock"],
        primary["total_cost_micros"].as_u64().unwrap(),
        "{primary}"
    );
    assert_eq!(
        by_provider["backup"],
        backup["total_cost_micros"].as_u64().unwrap(),
        "{backup}"
    );
}
