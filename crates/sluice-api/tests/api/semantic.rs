//! The semantic cache at the API, on the mock's bag-of-words vectors: a
//! paraphrase is served, a near miss the verifier refuses is not, and the
//! served hits are kept for review (`GET /v1/cache/semantic/samples`).

use serde_json::json;

use crate::support::{cacheable, semantic, with, TestApp};

/// The mock's semantic model embeds the cache's prompts; its vectors are
/// bag-of-words, so a threshold of 0.8 shortlists a one-word change.
pub const SEMANTIC: &str = r#"
[[models]]
name = "mock-embed-semantic"
providers = ["mock"]

[cache.semantic]
model = "mock-embed-semantic"
threshold = 0.8
"#;

#[tokio::test]
async fn a_paraphrase_is_served_a_near_miss_is_refused_and_hits_are_sampled() {
    let app = TestApp::builder().toml(SEMANTIC).worker().spawn().await;
    let source = app.submit_ok(&semantic("How do I cancel my order?")).await;
    let first = app.wait(&source).await;

    // The same content words: served, with its similarity.
    let hit = app
        .submit(&semantic("Please, how can I cancel my orders?"))
        .await;
    hit.expect(200);
    assert_eq!(hit.body["cache"]["kind"], "semantic");
    assert_eq!(hit.body["cache"]["source_job"], source);
    assert_eq!(hit.body["result"], first["result"]);
    let similarity = hit.body["cache"]["similarity"].as_f64().unwrap();

    // A number added: close enough to shortlist, refused by the verifier.
    app.submit_uncached(&semantic("How do I cancel my 2 orders?"))
        .await;
    assert!(
        app.has_metric(r#"sluice_cache_semantic_refusals_total{reason="number"} 1"#)
            .await,
        "the refusal is counted"
    );
    assert!(
        app.has_metric(r#"sluice_cache_requests_total{kind="semantic",outcome="hit"} 1"#)
            .await
    );
    // Each lookup is timed to its verdict: the source and the near miss
    // missed, the paraphrase hit.
    for (outcome, n) in [("hit", 1), ("miss", 2)] {
        let line =
            format!("sluice_cache_semantic_lookup_seconds_count{{outcome=\"{outcome}\"}} {n}");
        assert!(app.has_metric(&line).await, "{line}");
    }

    // The served hit, for review; another tenant sees none of it.
    let samples = app.get("/v1/cache/semantic/samples").await;
    samples.expect(200);
    assert_eq!(samples.body["object"], "list");
    let data = samples.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{data:?}");
    assert_eq!(data[0]["job"], hit.id());
    assert_eq!(data[0]["source_job"], source);
    assert_eq!(data[0]["similarity"], similarity);
    assert_eq!(data[0]["word_similarity"], 1.0);
    assert_eq!(data[0]["question"], "Please, how can I cancel my orders?");
    assert_eq!(data[0]["cached_question"], "How do I cancel my order?");
    assert!(data[0]["expected_error"].as_f64().unwrap() > 0.0);
    let other = app.tenant("globex").await;
    let theirs = other.get("/v1/cache/semantic/samples").await;
    theirs.expect(200);
    assert_eq!(theirs.body["data"], json!([]));
}

#[tokio::test]
async fn samples_and_max_error_out_of_bounds_are_refused() {
    let app = TestApp::builder().toml(SEMANTIC).spawn().await;
    for limit in ["0", "201", "many"] {
        app.get(&format!("/v1/cache/semantic/samples?limit={limit}"))
            .await
            .expect_problem(422, "invalid-request");
    }
    for max_error in [0.0, 1.5] {
        let job = with(
            cacheable("x"),
            "cache",
            json!({"semantic": true, "max_error": max_error}),
        );
        let reply = app.submit(&job).await;
        reply.expect_problem(422, "invalid-request");
        assert!(reply.detail().contains("max_error"), "{reply:?}");
    }
    assert_eq!(app.queued_jobs().await, 0);
}

/// Questions whose content words differ in one: the mock's vectors
/// shortlist each pair at 0.8.
const BILL: &str = "Where can I download the bill for my last order from the shop?";
const INVOICES: &str = "Where can I download the invoices for my last order from the shop?";
const SUBSCRIPTION: &str = "Where can I download the subscription for my last order from the shop?";

/// [`SEMANTIC`] with the fixture lexicon (`tests/fixtures/wordnet`: "bill"
/// and "invoice" share a sense, "subscription" is another thing).
fn with_lexicon(word_vectors: bool) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wordnet");
    format!("{SEMANTIC}lexicon = \"{dir}\"\nword_vectors = {word_vectors}\n")
}

#[tokio::test]
async fn a_lexicon_serves_a_synonym_with_no_word_call_and_refuses_another_thing() {
    let app = TestApp::builder()
        .toml(&with_lexicon(false))
        .worker()
        .spawn()
        .await;
    let source = app.submit_ok(&semantic(BILL)).await;
    let first = app.wait(&source).await;

    // The mock's vectors put "bill" and "invoice" far apart (the word check
    // alone refuses them: see below); the lexicon relates them.
    let hit = app.submit(&semantic(INVOICES)).await;
    hit.expect(200);
    assert_eq!(hit.body["cache"]["source_job"], source);
    assert_eq!(hit.body["result"], first["result"]);
    let samples = app.get("/v1/cache/semantic/samples").await;
    assert_eq!(samples.body["data"][0]["word_similarity"], 1.0);
    assert_eq!(samples.body["data"][0]["verified_by"], "words");

    // Another thing: refused, and without word vectors, without a call.
    app.submit_uncached(&semantic(SUBSCRIPTION)).await;
    assert!(
        app.has_metric(r#"sluice_cache_semantic_refusals_total{reason="counterpart"} 1"#)
            .await
    );
    // One embedding call per lookup, the question's, and none for words;
    // the first lookup also embedded the reference texts (the buckets'
    // centre): four ledger rows of the embedding model's.
    let embedded = app
        .usage_of("mock-embed-semantic", |l| l["jobs"] == 4)
        .await;
    assert_eq!(embedded["jobs"], 4, "{embedded}");
}

#[tokio::test]
async fn with_word_vectors_on_only_the_words_the_lexicon_leaves_are_embedded() {
    let app = TestApp::builder()
        .toml(&with_lexicon(true))
        .worker()
        .spawn()
        .await;
    let source = app.submit_ok(&semantic(BILL)).await;
    app.wait(&source).await;
    // bill/invoices settled by the lexicon: no word call.
    app.submit(&semantic(INVOICES)).await.expect(200);
    // subscription/bill left to the vectors: one word call, which the
    // mock's vectors refuse.
    app.submit_uncached(&semantic(SUBSCRIPTION)).await;
    // The reference texts, three questions' embeddings and one word call.
    let embedded = app
        .usage_of("mock-embed-semantic", |l| l["jobs"] == 5)
        .await;
    assert_eq!(embedded["jobs"], 5, "{embedded}");
    assert!(
        app.has_metric(r#"sluice_cache_semantic_refusals_total{reason="counterpart"} 1"#)
            .await
    );
}

#[tokio::test]
async fn without_a_lexicon_the_same_synonym_is_refused() {
    let app = TestApp::builder().toml(SEMANTIC).worker().spawn().await;
    let source = app.submit_ok(&semantic(BILL)).await;
    app.wait(&source).await;
    app.submit_uncached(&semantic(INVOICES)).await;
    assert!(
        app.has_metric(r#"sluice_cache_semantic_refusals_total{reason="counterpart"} 1"#)
            .await
    );
}
