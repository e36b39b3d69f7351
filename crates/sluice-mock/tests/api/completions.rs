use serde_json::json;
use sluice_mock::{answer_text, count_tokens};

use crate::helpers::{choice_texts, TestMock};

#[tokio::test]
async fn single_prompt() {
    let mock = TestMock::new();
    let (status, response) = mock
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": "Say hi", "max_tokens": 12}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["object"], "text_completion");
    assert!(response["id"].as_str().unwrap().starts_with("cmpl-"));
    let texts = choice_texts(&response);
    assert_eq!(texts.len(), 1);
    assert!(texts[0].starts_with(&answer_text("Say hi")));
    assert_eq!(count_tokens(&texts[0]), 12);
    assert_eq!(response["choices"][0]["finish_reason"], "length");
    assert_eq!(response["usage"]["prompt_tokens"], count_tokens("Say hi"));
    assert_eq!(response["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn prompt_array_gets_one_choice_per_prompt_in_order() {
    let mock = TestMock::new();
    let prompts = ["alpha", "a somewhat longer prompt", "gamma", "alpha"];
    let (status, response) = mock
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": prompts, "max_tokens": 8}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let texts = choice_texts(&response);
    assert_eq!(texts.len(), prompts.len());
    for (i, (text, prompt)) in texts.iter().zip(prompts).enumerate() {
        assert_eq!(response["choices"][i]["index"], i);
        assert!(text.starts_with(&answer_text(prompt)), "{i}: {text}");
        assert_eq!(count_tokens(text), 8);
    }
    // Equal prompts, equal answers; different prompts, different answers.
    assert_eq!(texts[0], texts[3]);
    assert_ne!(texts[0], texts[2]);

    let prompt_tokens: u64 = prompts.iter().map(|p| count_tokens(p)).sum();
    assert_eq!(response["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(response["usage"]["completion_tokens"], 8 * 4);
    assert_eq!(response["usage"]["total_tokens"], prompt_tokens + 32);
}

#[tokio::test]
async fn batch_answers_match_single_answers() {
    let mock = TestMock::new();
    let prompts = ["one", "two", "three"];
    let (_, batch) = mock
        .post("/v1/completions", &json!({"model": "m", "prompt": prompts}))
        .await;
    let batch = choice_texts(&batch);
    for (prompt, batched) in prompts.iter().zip(&batch) {
        let (_, single) = mock
            .post("/v1/completions", &json!({"model": "m", "prompt": prompt}))
            .await;
        assert_eq!(&choice_texts(&single)[0], batched);
    }
}

#[tokio::test]
async fn n_choices_per_prompt_are_numbered_like_openai() {
    let mock = TestMock::new();
    let prompts = ["p0", "p1"];
    let (_, response) = mock
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": prompts, "n": 3, "max_tokens": 7}),
        )
        .await;
    let choices = response["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        let prompt = prompts[i / 3];
        assert!(choice["text"]
            .as_str()
            .unwrap()
            .starts_with(&answer_text(prompt)));
    }
    assert_eq!(response["usage"]["completion_tokens"], 7 * 6);
}
