//! The semantic cache's judge model (`[cache.semantic] judge_model`), on
//! the mock's bag-of-words vectors and a scripted stand-in judge: an
//! OpenAI-compatible chat server that says "yes" to the pairs of
//! questions the test lists and "no" to any other (and fails, 400, when
//! the new question ends with "!"). The questions share their words, so
//! the mock's vectors shortlist each. It tests what Sluice does with a
//! judge's verdicts, not how well any model judges (that is
//! `sluice-bench cache --semantic --judge`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};
use sluice_core::cache::judge;

use crate::semantic::SEMANTIC;
use crate::support::{cacheable, semantic, with, TestApp};

/// The stand-in judge's script and what it was asked.
#[derive(Clone, Default)]
struct Script {
    /// (cached question, new question) pairs it calls the same.
    same: Arc<HashSet<(String, String)>>,
    asked: Arc<Mutex<Vec<Value>>>,
}

async fn answer(State(script): State<Script>, Json(body): Json<Value>) -> impl IntoResponse {
    script.asked.lock().unwrap().push(body.clone());
    let user = body["messages"][1]["content"].as_str().unwrap_or_default();
    let field = |name: &str| {
        user.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let (cached, new) = (field("Question A: "), field("Question B: "));
    if new.ends_with('!') {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "scripted failure"}})),
        );
    }
    let verdict = if script.same.contains(&(cached, new)) {
        "yes"
    } else {
        "no"
    };
    let reply = json!({
        "id": "chatcmpl-judge", "object": "chat.completion", "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": verdict}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
    });
    (StatusCode::OK, Json(reply))
}

/// A stack judged by the stand-in with `script`, whose hits were measured
/// 0.5% wrong.
async fn judged_app(script: &Script) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = TestApp::builder()
        .toml(&judged(&url))
        .worker()
        .spawn()
        .await;
    let judge = axum::Router::new()
        .route("/v1/chat/completions", post(answer))
        .with_state(script.clone());
    app.background(async move { axum::serve(listener, judge).await });
    app
}

/// The semantic cache on the mock's vectors (`semantic::SEMANTIC`), judged by the stand-in
/// (priced: 100 prompt tokens at 1 $/M and 1 completion token at 4 $/M,
/// 104 µ$ a verdict).
fn judged(url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "judge"
kind = "openai"
base_url = "{url}"
timeout_s = 10

[[models]]
name = "stand-in-judge"
providers = ["judge"]

[[prices]]
provider = "judge"
model = "stand-in-judge"
input = 1000000
cached_input = 0
output = 4000000

{SEMANTIC}judge_model = "stand-in-judge"
judge_error = 0.005
"#
    )
}

#[tokio::test]
async fn the_judge_decides_which_neighbour_serves_and_each_verdict_is_billed() {
    let source_question = "How do I cancel my order?";
    let paraphrase = "How do I cancel my order please?";
    let script = Script {
        same: Arc::new(HashSet::from([(
            source_question.to_owned(),
            paraphrase.to_owned(),
        )])),
        ..Script::default()
    };
    let app = judged_app(&script).await;
    let source = app.submit_ok(&semantic(source_question)).await;
    let first = app.wait(&source).await;

    // The judge says the same: served, with what verified it.
    let hit = app.submit(&semantic(paraphrase)).await;
    hit.expect(200);
    assert_eq!(hit.body["cache"]["kind"], "semantic");
    assert_eq!(hit.body["cache"]["source_job"], source);
    assert_eq!(hit.body["result"], first["result"]);
    {
        let asked = script.asked.lock().unwrap();
        assert_eq!(asked.len(), 1, "one verdict asked");
        let expected = judge::request("stand-in-judge", source_question, paraphrase);
        for field in ["model", "messages", "max_tokens", "temperature"] {
            assert_eq!(asked[0][field], expected[field], "{field}");
        }
    }

    // Close enough to shortlist, but the judge says no: a miss, queued.
    app.submit_uncached(&semantic("Please, how do I cancel my order?"))
        .await;
    assert!(
        app.has_metric(r#"sluice_cache_semantic_refusals_total{reason="judge"} 1"#)
            .await
    );

    // A judge that cannot answer serves nothing: a miss, counted as an
    // error, and the job is queued, not lost.
    app.submit_uncached(&semantic("How do I cancel my order please!"))
        .await;
    assert!(
        app.has_metric(r#"sluice_cache_requests_total{kind="semantic",outcome="error"} 1"#)
            .await
    );
    assert!(
        app.has_metric(r#"sluice_cache_requests_total{kind="semantic",outcome="hit"} 1"#)
            .await
    );

    // The sample says the judge let it serve, at the judge's measured error.
    let samples = app.get("/v1/cache/semantic/samples").await;
    let data = samples.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{data:?}");
    assert_eq!(data[0]["job"], hit.id());
    assert_eq!(data[0]["verified_by"], "judge");
    assert_eq!(data[0]["expected_error"], 0.005);
    assert!(data[0].get("word_similarity").is_none(), "{:?}", data[0]);

    // Each verdict given is a ledger row of the judge's, as it was priced:
    // two verdicts (yes, no), 104 µ$ each; the failed call billed nothing.
    let judge_line = app
        .usage_of("stand-in-judge", |l| l["cost_micros"] == 208)
        .await;
    assert_eq!(judge_line["cost_micros"], 208, "{judge_line}");
}

#[tokio::test]
async fn a_job_stricter_than_the_judge_gets_the_word_check_and_no_verdict_is_asked() {
    let script = Script::default();
    let app = judged_app(&script).await;
    let strict = |text: &str| {
        with(
            cacheable(text),
            "cache",
            json!({"semantic": true, "max_error": 0.001}),
        )
    };
    let source = app.submit_ok(&strict("How do I cancel my order?")).await;
    app.wait(&source).await;
    // Only function words differ: the word check serves it, unasked.
    let hit = app.submit(&strict("How can I cancel my order?")).await;
    hit.expect(200);
    let samples = app.get("/v1/cache/semantic/samples").await;
    assert_eq!(samples.body["data"][0]["verified_by"], "words");
    assert!(
        script.asked.lock().unwrap().is_empty(),
        "the judge was not asked"
    );
}
