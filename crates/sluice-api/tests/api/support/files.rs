//! Uploads through the Files API, as an SDK sends them.

use axum::body::Body;
use axum::http::{header, Method, Request};

use super::{Reply, TestApp};

const BOUNDARY: &str = "sluice-test-boundary";

/// A multipart form as an SDK sends it: `purpose`, then `file`.
pub fn form(purpose: Option<&str>, file: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(purpose) = purpose {
        body.extend(
            format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
        )
            .bytes(),
        );
    }
    if let Some(file) = file {
        body.extend(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ).bytes());
        body.extend_from_slice(file);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").bytes());
    body
}

pub async fn upload(app: &TestApp, body: Vec<u8>) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.key))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

/// Uploads `content` as a batch input file; its id.
pub async fn upload_batch_input(app: &TestApp, content: &[u8]) -> String {
    let reply = upload(app, form(Some("batch"), Some(content))).await;
    reply.expect(200);
    reply.body["id"].as_str().unwrap().to_owned()
}
