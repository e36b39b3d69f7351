use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use sluice_mock::{MockOptions, MockServer, Price};
use tower::ServiceExt;

/// Bodies in tests are small; this only guards against a runaway answer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

pub struct TestMock {
    pub server: MockServer,
}

impl TestMock {
    pub fn new() -> Self {
        Self::with(MockOptions::default())
    }

    pub fn with(options: MockOptions) -> Self {
        Self {
            server: MockServer::new(options),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string(), None).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: String,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(path).header("content-type", "application/json");
        if let Some(key) = bearer {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// GETs `path` with extra `headers`, keeping the response's headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send_full(request.body(Body::empty()).unwrap()).await
    }

    /// DELETEs `path` with extra `headers`.
    pub async fn delete_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::delete(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send_full(request.body(Body::empty()).unwrap()).await
    }

    /// Uploads `content` as a file named `filename` for `purpose`, in a
    /// multipart form as the OpenAI SDKs send it.
    pub async fn upload(&self, filename: &str, purpose: &str, content: &str) -> Reply {
        let boundary = "mock-test-boundary-7f3a";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
        );
        let request = Request::post("/v1/files")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send_full(request).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let reply = self.send_full(request).await;
        (reply.status, reply.body)
    }

    /// POSTs `body` as JSON with extra `headers`, keeping the response's
    /// headers.
    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::post(path).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send_full(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// POSTs `body` and keeps the response's headers.
    pub async fn post_full(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, body, &[]).await
    }

    /// An Anthropic Messages call with the version header.
    pub async fn messages(&self, body: &Value) -> Reply {
        self.post_with("/v1/messages", body, &[("anthropic-version", "2023-06-01")])
            .await
    }

    async fn send_full(&self, request: Request<Body>) -> Reply {
        let response = self.server.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// A response with its headers.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// A header as an integer.
    pub fn header_u64(&self, name: &str) -> u64 {
        self.headers[name].to_str().unwrap().parse().unwrap()
    }

    /// What the mock charged for this request.
    pub fn cost(&self) -> u64 {
        self.header_u64("x-mock-cost-micros")
    }
}

/// The cost of an OpenAI-route request, written independently of the
/// crate: `(uncached × input + cached × cached_input + completion ×
/// output) / 1e6`, rounded half up.
pub fn openai_cost(price: &Price, prompt: u64, cached: u64, completion: u64) -> u64 {
    let exact = u128::from(prompt - cached) * u128::from(price.input)
        + u128::from(cached) * u128::from(price.cached_input)
        + u128::from(completion) * u128::from(price.output);
    u64::try_from((exact + 500_000) / 1_000_000).unwrap()
}

/// The cost of an Anthropic request: cache writes at 1.25 × input, i.e.
/// `(uncached × input + read × cached_input + 1.25 × written × input +
/// output × output_price) / 1e6`, rounded half up, in quarter units.
pub fn anthropic_cost(price: &Price, input: u64, read: u64, written: u64, output: u64) -> u64 {
    let quarters = 4 * u128::from(input) * u128::from(price.input)
        + 4 * u128::from(read) * u128::from(price.cached_input)
        + 5 * u128::from(written) * u128::from(price.input)
        + 4 * u128::from(output) * u128::from(price.output);
    u64::try_from((quarters + 2_000_000) / 4_000_000).unwrap()
}

/// Each line of a JSONL text, parsed.
pub fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The text of every choice of a completions response, in order.
pub fn choice_texts(response: &Value) -> Vec<String> {
    response["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The content of the first choice of a chat response.
pub fn chat_content(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A mock that takes its time: 100 ms fixed, 1 ms a prompt token and 20 ms
/// a completion token, so a test can tell prefill from decode.
pub fn slow_options() -> MockOptions {
    MockOptions {
        latency: sluice_mock::LatencyOptions {
            fixed_ms: 100,
            per_prompt_token_us: 1_000,
            per_completion_token_us: 20_000,
            ..sluice_mock::LatencyOptions::default()
        },
        ..MockOptions::default()
    }
}
