use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sluice_mock::{MockOptions, MockServer};
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

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.server.router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }
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
