//! The response cache on the real services: exact hits at the API, one
//! provider call for identical requests in flight, semantic neighbours,
//! tenant isolation, and a cache that vanishes without breaking anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, Client, Stack, StackExt, StackOptions};

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": "mock-small", "temperature": 0, "max_tokens": 8,
        "messages": [{"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    json!({"body": body})
}

async fn chat_calls(stack: &Stack) -> u64 {
    stack.mock_stats().await["by_endpoint"]["/v1/chat/completions"]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// Submits and expects a cache hit: 200 with the finished job.
async fn expect_hit(client: &Client, job: &Value) -> Value {
    let r = client.post("/v1/jobs", job).await;
    assert_eq!(r.status, 200, "expected a cache hit: {r:?}");
    assert_eq!(r.body["status"], "succeeded", "{r:?}");
    assert_eq!(r.body["cached"], true, "{r:?}");
    r.body
}

#[tokio::test]
async fn repeats_hit_and_any_change_or_another_tenant_misses() {
    let (stack, acme) = acme_stack(StackOptions {
        mock_args: vec!["--price".into(), "mock-small=1000000:100000:4000000".into()],
        extra_toml: "[[prices]]\nprovider = \"mock\"\nmodel = \"mock-small\"\ninput = 1000000\ncached_input = 100000\noutput = 4000000\n".into(),
        ..StackOptions::default()
    })
    .await;
    let job = chat("What is the boiling point of water?", json!({}));
    let first = acme.submit(&job).await;
    let first = acme.wait(&first, 30).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["cached"], false);
    let cost = first["cost_micros"].as_u64().unwrap();
    assert!(cost > 0);

    let hit = expect_hit(&acme, &job).await;
    assert_ne!(hit["id"], first["id"], "a hit is a job of its own");
    assert_eq!(hit["result"], first["result"]);
    assert_eq!(hit["cost_micros"], 0);
    assert_eq!(hit["cache"]["kind"], "exact");
    assert_eq!(hit["cache"]["source_job"], first["id"]);
    assert_eq!(hit["cache"]["saved_micros"], cost);
    // The hit is stored: a poll reads it back.
    let polled = acme.job(hit["id"].as_str().unwrap()).await;
    assert_eq!(polled.body["result"], first["result"], "{polled:?}");

    // The same request with keys reordered, spacing changed, a default
    // spelled out and a field that cannot change the answer: a hit.
    let reordered = r#"{"body": {"messages": [{"content": "What is the boiling point of water?", "role": "user"}],
        "max_tokens": 8.0, "top_p": 1, "user": "someone", "temperature": 0.0, "model": "mock-small"}}"#;
    let r = acme.post_raw("/v1/jobs", reordered).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["result"], first["result"]);

    let calls = chat_calls(&stack).await;
    assert_eq!(calls, 1);
    // Any change that can change the answer misses.
    for changed in [
        chat(
            "What is the boiling point of water?",
            json!({"max_tokens": 9}),
        ),
        chat(
            "What is the boiling point of water?",
            json!({"temperature": 0.5, "seed": 1}),
        ),
        chat("What is the boiling point of water? ", json!({})),
    ] {
        let id = acme.submit(&changed).await;
        assert_eq!(acme.wait(&id, 30).await["status"], "succeeded");
    }
    // Another tenant never sees acme's answers.
    let other = stack.tenant("other").await;
    let id = other.submit(&job).await;
    assert_eq!(other.wait(&id, 30).await["cached"], false);
    assert_eq!(chat_calls(&stack).await, calls + 4);

    // Not deterministic and not asked: never cached. `mode: off`: neither.
    let sampled = json!({"body": {"model": "mock-small", "max_tokens": 8,
        "messages": [{"role": "user", "content": "Write a haiku"}]}});
    for _ in 0..2 {
        let id = acme.submit(&sampled).await;
        assert_eq!(acme.wait(&id, 30).await["cached"], false);
    }
    let mut off = job.clone();
    off["cache"] = json!({"mode": "off"});
    acme.submit(&off).await;

    // The ledger: each hit a row at cost 0 that saved the first call's cost
    // (hit rows are written just after the answer).
    let mut saved = 0;
    for _ in 0..50 {
        let usage = acme.get("/v1/usage").await;
        assert_eq!(usage.status, 200, "{usage:?}");
        saved = usage.body["total"]["saved_micros"].as_u64().unwrap();
        if saved == 2 * cost {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(saved, 2 * cost);

    // Clearing the tenant's cache makes the next repeat miss.
    let r = acme.delete("/v1/cache?model=mock-small").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["deleted"].as_u64().unwrap() >= 1, "{r:?}");
    let id = acme.submit(&job).await;
    assert_eq!(acme.wait(&id, 30).await["cached"], false);
}

#[tokio::test]
async fn identical_concurrent_submissions_make_one_provider_call() {
    let (stack, acme) = acme_stack(StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), "400".into()],
        ..StackOptions::default()
    })
    .await;
    let job = chat("Classify: my invoice is wrong", json!({}));
    let submits = (0..100).map(|_| {
        let acme = acme.clone();
        let job = job.clone();
        async move {
            let r = acme.post("/v1/jobs", &job).await;
            assert!(r.status == 202 || r.status == 200, "{r:?}");
            r.body["id"].as_str().unwrap().to_owned()
        }
    });
    let ids: Vec<String> = futures::future::join_all(submits).await;
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 100, "each caller gets its own job");
    let jobs = acme.wait_all(&ids, 60).await;
    let result = &jobs[0]["result"];
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(&job["result"], result);
    }
    assert_eq!(
        chat_calls(&stack).await,
        1,
        "one provider call for 100 requests"
    );
    // One job made the call; every other joined it in flight (or, if it
    // came after the answer, was answered from the cache).
    let uncached: Vec<&Value> = jobs.iter().filter(|j| j["cached"] == false).collect();
    assert_eq!(uncached.len(), 1, "{uncached:?}");
    let leader = &uncached[0]["id"];
    for job in jobs.iter().filter(|j| j["cached"] == true) {
        assert_eq!(&job["cache"]["source_job"], leader, "{job}");
    }
}

#[tokio::test]
async fn identical_jobs_in_batches_join_one_in_flight() {
    let (stack, acme) = acme_stack(StackOptions {
        mock_args: vec!["--latency-fixed-ms".into(), "600".into()],
        ..StackOptions::default()
    })
    .await;
    let same = chat("Classify: my parcel is late", json!({}));
    let mut first = vec![same.clone(); 10];
    first.push(chat("Classify: my password expired", json!({})));
    first.push(chat("Classify: upgrade my plan", json!({})));
    let mut ids = acme.submit_batch(first).await;
    // A second batch while the first is in flight joins it too.
    ids.extend(acme.submit_batch(vec![same.clone(); 5]).await);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 17, "each job gets its own id");

    let jobs = acme.wait_all(&ids, 60).await;
    let repeats: Vec<&Value> = jobs[..10].iter().chain(&jobs[12..]).collect();
    for job in jobs.iter() {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    for job in &repeats {
        assert_eq!(job["result"], repeats[0]["result"], "{job}");
    }
    assert_ne!(jobs[10]["result"], repeats[0]["result"]);
    assert_eq!(
        chat_calls(&stack).await,
        3,
        "one provider call per distinct request"
    );
    let uncached: Vec<&&Value> = repeats.iter().filter(|j| j["cached"] == false).collect();
    assert_eq!(uncached.len(), 1, "{uncached:?}");
    for job in repeats.iter().filter(|j| j["cached"] == true) {
        assert_eq!(job["cache"]["source_job"], uncached[0]["id"], "{job}");
    }
}

#[tokio::test]
async fn a_canceled_leader_hands_its_followers_on() {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let mut stack = stack;
    let acme = stack.tenant("acme").await;
    let job = chat(
        "Extract the order number from: order 1234 is late",
        json!({}),
    );
    let leader = acme.submit(&job).await;
    let followers: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(acme.submit(&job).await);
        }
        ids
    };
    let r = acme
        .post(&format!("/v1/jobs/{leader}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    stack.start_worker().await;
    let jobs = acme.wait_all(&followers, 60).await;
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    assert_eq!(acme.wait(&leader, 1).await["status"], "canceled");
    assert!(chat_calls(&stack).await >= 1);
}

#[tokio::test]
async fn semantic_paraphrases_hit_and_strangers_miss() {
    let (stack, acme) = acme_stack(StackOptions {
        extra_toml: r#"
[[models]]
name = "mock-embed-semantic"
providers = ["mock"]

[cache.semantic]
model = "mock-embed-semantic"
threshold = 0.9
"#
        .into(),
        ..StackOptions::default()
    })
    .await;
    let semantic = json!({"semantic": true});
    let mut job = chat(
        "Summarize the quarterly sales report for the board",
        json!({}),
    );
    job["cache"] = semantic.clone();
    let first = acme.submit(&job).await;
    let first = acme.wait(&first, 30).await;
    assert_eq!(first["status"], "succeeded");

    let mut paraphrase = chat(
        "For the board, summarize the quarterly sales reports, please",
        json!({}),
    );
    paraphrase["cache"] = semantic.clone();
    let hit = expect_hit(&acme, &paraphrase).await;
    assert_eq!(hit["cache"]["kind"], "semantic");
    assert_eq!(hit["cache"]["semantic"], true);
    assert!(hit["cache"]["similarity"].as_f64().unwrap() >= 0.9, "{hit}");
    assert_eq!(hit["result"], first["result"]);

    let mut stranger = chat("Translate this poem into French", json!({}));
    stranger["cache"] = semantic.clone();
    let id = acme.submit(&stranger).await;
    assert_eq!(acme.wait(&id, 30).await["cached"], false);

    let other = stack.tenant("other").await;
    let id = other.submit(&paraphrase).await;
    assert_eq!(other.wait(&id, 30).await["cached"], false);

    // The embedding calls are billed to the tenant, as their own lines.
    let mut billed = false;
    for _ in 0..50 {
        let usage = acme.get("/v1/usage?group_by=model").await;
        billed = usage.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["group"]["model"] == "mock-embed-semantic");
        if billed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(billed, "the embedding calls are in the ledger");
}

#[tokio::test]
async fn a_flushed_cache_misses_and_nothing_breaks() {
    let (stack, acme) = acme_stack(StackOptions::default()).await;
    let job =
        json!({"endpoint": "/v1/embeddings", "body": {"model": "mock-embed", "input": "flush me"}});
    let first = acme.submit(&job).await;
    let first = acme.wait(&first, 30).await;
    expect_hit(&acme, &job).await;

    // Everything this stack keeps in Redis goes: cache, in-flight map, jobs.
    delete_all(&stack.prefix).await;
    let id = acme.submit(&job).await;
    let again = acme.wait(&id, 30).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["cached"], false);
    assert_eq!(again["result"], first["result"]);
    expect_hit(&acme, &job).await;
}

async fn delete_all(prefix: &str) {
    use fred::prelude::*;
    let (client, keys) = sluice_e2e::redis_keys(&format!("{prefix}:*")).await;
    for chunk in keys.chunks(500) {
        let _: i64 = client.del(chunk.to_vec()).await.unwrap();
    }
    client.quit().await.unwrap();
}
