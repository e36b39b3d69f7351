//! An HTTP client for one tenant's key.

use serde_json::{json, Value};

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: String,
    http: reqwest::Client,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    /// Every header, by lower-case name.
    pub headers: std::collections::HashMap<String, String>,
    pub body: Value,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        let response = request.send().await.expect("request reaches the API");
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let location = header(reqwest::header::LOCATION);
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            content_type,
            location,
            headers,
            body,
        }
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        let request = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Response {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        self.send(request).await
    }

    /// Uploads `content` as a batch input file, as an SDK does; its id.
    pub async fn upload_batch_input(&self, content: &[u8]) -> String {
        sluice_testkit::upload_batch_input(&self.http, &self.base, &self.key, content)
            .await
            .expect("the upload is accepted")
    }

    /// Submits one job; panics unless it is accepted. Returns its id.
    pub async fn submit(&self, job: &Value) -> String {
        let r = self.post("/v1/jobs", job).await;
        assert_eq!(r.status, 202, "submit failed: {r:?}");
        r.body["id"].as_str().expect("job id").to_owned()
    }

    /// Submits a batch; panics unless every job is accepted. Returns the ids.
    pub async fn submit_batch(&self, jobs: Vec<Value>) -> Vec<String> {
        let r = self.post("/v1/jobs/batch", &json!({"jobs": jobs})).await;
        assert_eq!(r.status, 202, "batch submit failed: {r:?}");
        r.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| {
                j["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("not accepted: {j}"))
                    .to_owned()
            })
            .collect()
    }

    pub async fn job(&self, id: &str) -> Response {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// Long-polls until the job ends (or `secs` pass); returns the job.
    pub async fn wait(&self, id: &str, secs: u64) -> Value {
        let r = self.get(&format!("/v1/jobs/{id}?wait={secs}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// Waits until every job ended; returns them in order.
    pub async fn wait_all(&self, ids: &[String], secs: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
                .clamp(1, 60);
            let mut job = self.wait(id, left).await;
            while !is_terminal(&job) && tokio::time::Instant::now() < deadline {
                job = self.wait(id, 5).await;
            }
            assert!(is_terminal(&job), "job {id} did not end in {secs} s: {job}");
            jobs.push(job);
        }
        jobs
    }
}

pub fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "canceled" | "expired")
    )
}
