//! Requests as a client sends them, through the router in-process, and
//! the answer with its status, headers and JSON body.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::app::TestApp;

/// Answers in tests are small; this only guards against a runaway one.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// An answer: status, headers, and the body as JSON (a string when it is
/// not JSON, null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// A header's value; panics (naming the reply) when it is missing.
    pub fn header(&self, name: &str) -> &str {
        match self.headers.get(name) {
            Some(v) => v.to_str().unwrap(),
            None => panic!("no {name} header in {self:?}"),
        }
    }

    /// A header as an integer.
    pub fn header_u64(&self, name: &str) -> u64 {
        self.header(name).parse().unwrap()
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The job's id, in a job answer.
    pub fn id(&self) -> String {
        match self.body["id"].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no job id in {self:?}"),
        }
    }

    /// Checks the status, then returns self for more checks.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self
    }

    /// Checks that this is the problem `/problems/{slug}` with `status`,
    /// as problem+json with a title and a detail.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, slug: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.content_type(), "application/problem+json", "{self:?}");
        assert_eq!(self.body["type"], format!("/problems/{slug}"), "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(self.body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.detail().len() > 3, "{self:?}");
        self
    }

    /// A problem's `detail`.
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }

    /// Checks an error in OpenAI's shape (the OpenAI-compatible routes):
    /// the status, `error.type` and `error.code` (`None`: null).
    pub fn expect_openai_error(&self, status: u16, kind: &str, code: Option<&str>) -> &Self {
        self.expect(status);
        assert_eq!(self.content_type(), "application/json", "{self:?}");
        let error = &self.body["error"];
        assert_eq!(error["type"], kind, "{self:?}");
        assert_eq!(
            error["code"],
            code.map_or(serde_json::Value::Null, Into::into),
            "{self:?}"
        );
        assert!(error.get("param").is_some(), "{self:?}");
        assert!(self.message().len() > 3, "{self:?}");
        self
    }

    /// An OpenAI error's `error.message`.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// Sends a request as is (no key added).
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request with this app's key and `headers`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key))
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Body::empty(), &[]).await
    }

    /// Whether `/metrics` shows `line` exactly.
    pub async fn has_metric(&self, line: &str) -> bool {
        let reply = self.get("/metrics").await;
        reply.body.as_str().unwrap().lines().any(|l| l == line)
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Body::empty(), &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, body.to_string(), &[]).await
    }

    /// POSTs text that need not be JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<Body>) -> Reply {
        self.call(Method::POST, path, body, &[]).await
    }

    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.call(Method::POST, path, body.to_string(), headers)
            .await
    }

    /// `POST /v1/jobs`.
    pub async fn submit(&self, job: &Value) -> Reply {
        self.post("/v1/jobs", job).await
    }

    /// `POST /v1/jobs` that must be accepted (202); the job's id.
    pub async fn submit_ok(&self, job: &Value) -> String {
        self.submit(job).await.expect(202).id()
    }

    /// `POST /v1/jobs/batch` with these job envelopes.
    pub async fn batch(&self, jobs: &[Value]) -> Reply {
        self.post("/v1/jobs/batch", &serde_json::json!({ "jobs": jobs }))
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Reply {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// Long-polls the job until it ends (at most 30 s); the job.
    /// Submits `job`, which must miss the cache: queued (202), and ended
    /// by a worker, not from the cache. Its finished view.
    pub async fn submit_uncached(&self, job: &Value) -> Value {
        let reply = self.submit(job).await;
        reply.expect(202);
        let ended = self.wait(&reply.id()).await;
        assert_eq!(ended["cached"], false, "{ended}");
        ended
    }

    pub async fn wait(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/jobs/{id}?wait=30")).await;
        reply.expect(200);
        let status = reply.body["status"].as_str().unwrap();
        assert!(
            !matches!(status, "queued" | "running"),
            "job {id} did not end: {reply:?}"
        );
        reply.body
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Reply {
        self.post_raw(&format!("/v1/jobs/{id}/cancel"), Body::empty())
            .await
    }
}
