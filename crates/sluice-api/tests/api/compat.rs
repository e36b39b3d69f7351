//! The OpenAI-compatible routes: each call is an interactive job that the
//! route waits for, answered with the provider's body and `Sluice-Job-Id`.

use serde_json::json;

use crate::support::TestApp;

fn chat_body(text: &str) -> serde_json::Value {
    json!({"model": "mock-small", "max_tokens": 5,
           "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn chat_completions_answer_as_openai_does_through_a_job() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post("/v1/chat/completions", &chat_body("sdk call"))
        .await;
    reply.expect(200);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.body["object"], "chat.completion");
    let text = reply.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        text.starts_with(&sluice_mock::answer_text("sdk call")),
        "{text}"
    );
    assert_eq!(reply.body["usage"]["completion_tokens"], 5);
    // It was a job like any other, at interactive priority.
    let job = app.job(reply.header("sluice-job-id")).await;
    job.expect(200);
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["priority"], "interactive");
    assert_eq!(job.body["result"], reply.body);
}

#[tokio::test]
async fn completions_and_embeddings_answer_too() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": "Once upon", "max_tokens": 3}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "text_completion");
    assert_eq!(reply.body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(reply.body["usage"]["completion_tokens"], 3);
    assert!(reply.headers.contains_key("sluice-job-id"));

    let reply = app
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": "vector me"}),
        )
        .await;
    reply.expect(200);
    assert_eq!(reply.body["object"], "list");
    let vector = reply.body["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 16);
}

/// The vectors an embeddings answer holds, in order, each checked to be at
/// its own index.
fn vectors(reply: &serde_json::Value) -> Vec<serde_json::Value> {
    let data = reply["data"].as_array().unwrap();
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i, "{reply}");
    }
    data.iter().map(|item| item["embedding"].clone()).collect()
}

#[tokio::test]
async fn embeddings_take_every_input_shape_and_answer_each_item_in_order() {
    let app = TestApp::spawn_with_worker().await;
    let embed = |input: serde_json::Value| {
        let app = &app;
        async move {
            let reply = app
                .post(
                    "/v1/embeddings",
                    &json!({"model": "mock-embed", "input": input}),
                )
                .await;
            reply.expect(200);
            reply.body.clone()
        }
    };
    let one = vectors(&embed(json!("one")).await);
    let two = vectors(&embed(json!("two")).await);
    assert_eq!(one.len(), 1);
    // A list: one vector per string, each the string's own.
    let both = vectors(&embed(json!(["one", "two"])).await);
    assert_eq!(both, [one[0].clone(), two[0].clone()]);
    // Token ids: one list is one input; a list of lists is one each.
    let ids = vectors(&embed(json!([1, 2, 3])).await);
    assert_eq!(ids.len(), 1);
    let lists = vectors(&embed(json!([[1, 2, 3], [4, 5]])).await);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0], ids[0]);
    assert_ne!(lists[0], lists[1]);
    // `dimensions` and `encoding_format` pass through.
    let short = app
        .post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": ["one", "two"], "dimensions": 4,
                    "encoding_format": "base64"}),
        )
        .await;
    short.expect(200);
    for v in vectors(&short.body) {
        let bytes = base64_len(v.as_str().unwrap());
        assert_eq!(bytes, 4 * 4, "four float32s");
    }
    // Refused before it becomes a job: an empty or mixed input.
    for bad in [json!([]), json!(["a", 1]), json!([[]])] {
        app.post(
            "/v1/embeddings",
            &json!({"model": "mock-embed", "input": bad}),
        )
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    }
}

/// How many bytes a base64 text decodes to.
fn base64_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    text.len() / 4 * 3 - padding
}

#[tokio::test]
async fn completions_with_prompt_lists_and_several_choices_get_their_own_choices() {
    let app = TestApp::spawn_with_worker().await;
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": ["one", "two"], "max_tokens": 7}),
        )
        .await;
    reply.expect(200);
    let choices = reply.body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, (choice, prompt)) in choices.iter().zip(["one", "two"]).enumerate() {
        assert_eq!(choice["index"], i);
        let text = choice["text"].as_str().unwrap();
        assert!(
            text.starts_with(&sluice_mock::answer_text(prompt)),
            "{text}"
        );
    }
    assert_eq!(reply.body["usage"]["completion_tokens"], 14);
    // `n` choices per prompt, numbered as OpenAI numbers them.
    let reply = app
        .post(
            "/v1/completions",
            &json!({"model": "mock-small", "prompt": ["a", "b"], "n": 2, "max_tokens": 3}),
        )
        .await;
    reply.expect(200);
    let choices = reply.body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(reply.body["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn jobs_with_list_inputs_share_a_call_and_each_gets_exactly_its_own() {
    let app = TestApp::spawn().await;
    let inputs = [
        json!("solo"),
        json!(["a", "b", "c"]),
        json!([[7, 8], [9]]),
        json!(["d"]),
    ];
    let jobs: Vec<serde_json::Value> = inputs
        .iter()
        .map(|input| {
            json!({"endpoint": "/v1/embeddings",
                   "body": {"model": "mock-embed", "input": input}, "cache": {"mode": "off"}})
        })
        .collect();
    let ids: Vec<String> = app.batch(&jobs).await.expect(202).body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    app.start_worker();
    let mut prompt_tokens = 0;
    let mut answers = Vec::new();
    for id in &ids {
        let job = app.wait(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        prompt_tokens += job["usage"]["prompt_tokens"].as_u64().unwrap();
        answers.push(job["result"].clone());
    }
    let stats = app.mock.stats();
    // One call for the three jobs of text, one for the job of token ids (a
    // provider takes one kind per call).
    assert_eq!(stats.total.requests, 2, "{stats:?}");
    assert_eq!(stats.total.prompts, 7, "1 + 3 + 2 + 1 inputs");
    assert_eq!(
        prompt_tokens, stats.total.prompt_tokens,
        "the shares sum to the call"
    );
    let counts: Vec<usize> = answers.iter().map(|a| vectors(a).len()).collect();
    assert_eq!(counts, [1, 3, 2, 1]);
    // Each job's vectors are those of its own inputs, alone.
    let alone = app.tenant("alone").await;
    for (input, answer) in inputs.iter().zip(&answers) {
        let reply = alone
            .post(
                "/v1/embeddings",
                &json!({"model": "mock-embed", "input": input}),
            )
            .await;
        reply.expect(200);
        assert_eq!(vectors(&reply.body), vectors(answer), "{input}");
    }
}

#[tokio::test]
async fn a_repeated_deterministic_call_is_answered_from_the_cache() {
    let app = TestApp::spawn_with_worker().await;
    let body = json!({"model": "mock-small", "temperature": 0,
                      "messages": [{"role": "user", "content": "same again"}]});
    let first = app.post("/v1/chat/completions", &body).await;
    first.expect(200);
    let second = app.post("/v1/chat/completions", &body).await;
    second.expect(200);
    assert_eq!(second.body, first.body);
    assert_ne!(
        second.header("sluice-job-id"),
        first.header("sluice-job-id")
    );
    assert_eq!(app.mock.stats().total.prompts, 1);
}

#[tokio::test]
async fn a_bad_call_is_refused_before_it_becomes_a_job() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": []}),
    )
    .await
    .expect_openai_error(404, "invalid_request_error", Some("model_not_found"));
    let reply = app
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(reply.body["error"]["param"], "model");
    let streaming = json!({"model": "mock-small", "stream": "yes",
                           "messages": [{"role": "user", "content": "x"}]});
    let reply = app.post("/v1/chat/completions", &streaming).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert!(reply.message().contains("stream"), "{reply:?}");
    app.post("/v1/embeddings", &json!({"model": "mock-embed"}))
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    app.post_raw("/v1/completions", "{\"model\": ")
        .await
        .expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(app.queued_jobs().await, 0);
}

#[tokio::test]
async fn a_job_that_fails_at_the_provider_answers_502() {
    let app = TestApp::builder()
        .toml("[worker]\nprovider_attempts = 1")
        .worker()
        .spawn()
        .await;
    app.mock.set_down(true);
    let reply = app
        .post("/v1/chat/completions", &chat_body("the provider is down"))
        .await;
    reply.expect_openai_error(502, "server_error", None);
    let id = reply.header("sluice-job-id").to_owned();
    assert!(reply.message().contains(&id), "{reply:?}");
    let job = app.job(&id).await;
    assert_eq!(job.body["status"], "failed");
    assert!(job.body["error"]["message"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_job_still_running_after_ten_minutes_answers_504_and_goes_on() {
    // No worker: the job stays queued; the paused clock runs the
    // ten-minute wait at once.
    let app = TestApp::spawn().await;
    let started = tokio::time::Instant::now();
    let reply = app
        .post("/v1/chat/completions", &chat_body("a long one"))
        .await;
    reply.expect_openai_error(504, "server_error", Some("timeout"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(600));
    let id = reply.header("sluice-job-id").to_owned();
    assert!(
        reply.message().contains(&format!("/v1/jobs/{id}")),
        "{reply:?}"
    );
    assert_eq!(app.job(&id).await.body["status"], "queued");
    assert_eq!(app.queued_jobs().await, 1);
}

#[tokio::test]
async fn a_providers_refusal_reaches_the_caller_with_its_status_and_error() {
    let app = TestApp::spawn_with_worker().await;
    let mut body = chat_body("too long an answer");
    body["max_tokens"] = json!(1_000_000_000u64);
    let reply = app.post("/v1/chat/completions", &body).await;
    reply.expect_openai_error(400, "invalid_request_error", None);
    assert_eq!(reply.body["error"]["param"], "max_tokens", "{reply:?}");
    assert!(reply.message().contains("at most"), "{reply:?}");
    // The job carries the same refusal.
    let job = app.job(reply.header("sluice-job-id")).await;
    assert_eq!(job.body["status"], "failed");
    assert_eq!(job.body["error"]["type"], "provider_rejected");
    assert_eq!(job.body["error"]["rejection"]["status"], 400);
    assert_eq!(job.body["error"]["rejection"]["error"], reply.body["error"]);
}

#[tokio::test]
async fn models_lists_every_route_and_names_one() {
    let app = TestApp::spawn().await;
    let list = app.get("/v1/models").await.expect(200).body.clone();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let routed: Vec<&str> = app.config.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(ids, routed);
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert!(model["created"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(model["owned_by"], "sluice");
    }
    let one = app
        .get("/v1/models/mock-small")
        .await
        .expect(200)
        .body
        .clone();
    assert_eq!(one["id"], "mock-small");
    let reply = app.get("/v1/models/gpt-nope").await;
    reply.expect_openai_error(404, "invalid_request_error", Some("model_not_found"));
    assert!(reply.message().contains("gpt-nope"), "{reply:?}");
}

/// The request fields that matter reach the provider as the caller sent
/// them (read back from what the mock received), and a tool call comes
/// back intact.
#[tokio::test]
async fn the_fields_that_matter_reach_the_provider_and_tool_calls_come_back() {
    let app = TestApp::spawn_with_worker().await;
    let tools = json!([
        {"type": "function", "function": {"name": "lookup_order",
         "description": "Finds an order", "strict": true,
         "parameters": {"type": "object", "properties": {"input": {"type": "string"}},
                        "required": ["input"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "cancel_order",
         "parameters": {"type": "object", "properties": {}}}}
    ]);
    let passed = json!({
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "parallel_tool_calls": false,
        "logprobs": true,
        "top_logprobs": 2,
        "seed": 42,
        "stop": ["\n\n", "END"],
        "user": "user-1234",
        "metadata": {"ticket": "T-9"},
        "service_tier": "default",
        "temperature": 0.2,
    });
    let mut body = chat_body("where is my order 17?");
    for (k, v) in passed.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = app.post("/v1/chat/completions", &body).await;
    reply.expect(200);
    let choice = &reply.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{}", reply.body);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup_order");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["input"].is_string(), "{args}");
    assert!(choice["message"]["content"].is_null());

    let received = app.mock.received();
    let sent = received
        .iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("the mock received the call");
    for (k, v) in passed.as_object().unwrap() {
        assert_eq!(
            &sent.body[k], v,
            "{k} as the provider received it: {}",
            sent.body
        );
    }
    assert_eq!(sent.body["messages"], body["messages"]);

    // A JSON response format reaches it too, and the answer is JSON.
    let mut json_body = chat_body("answer in json");
    json_body["response_format"] = json!({"type": "json_schema", "json_schema": {
        "name": "answer", "strict": true,
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}},
                   "required": ["answer"], "additionalProperties": false}}});
    let reply = app.post("/v1/chat/completions", &json_body).await;
    reply.expect(200);
    let content = reply.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(content).unwrap();
    assert!(parsed["answer"].is_string(), "{content}");
    let sent = app.mock.received();
    let sent = sent
        .iter()
        .rev()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(sent.body["response_format"], json_body["response_format"]);
}
