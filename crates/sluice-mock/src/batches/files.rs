//! OpenAI's Files API, as much of it as batches need: `POST /v1/files`
//! (multipart: `purpose` and `file`), `GET /v1/files` (`?purpose=`),
//! `GET /v1/files/{id}`, `GET /v1/files/{id}/content` (the bytes as
//! uploaded or written) and `DELETE /v1/files/{id}`.
//!
//! A file object is `{"id": "file-…", "object": "file", "bytes",
//! "created_at", "filename", "purpose", "status": "processed",
//! "status_details": null, "expires_at": null}`. A batch's results are
//! files too, with purpose `batch_output`. Ids are a function of the
//! file's number since start or reset and its name and size.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::multipart;
use crate::error::ApiError;
use crate::routes::{response_id, unix_now};
use crate::state::Shared;

pub(crate) const PATH: &str = "/v1/files";
pub(crate) const ONE_PATH: &str = "/v1/files/{id}";
pub(crate) const CONTENT_PATH: &str = "/v1/files/{id}/content";

/// The purposes OpenAI accepts on upload.
const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// The purpose of the files a batch writes.
pub(crate) const OUTPUT_PURPOSE: &str = "batch_output";

/// One stored file.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub(crate) id: String,
    pub(crate) filename: String,
    pub(crate) purpose: String,
    pub(crate) created_at: u64,
    pub(crate) data: Bytes,
}

impl File {
    /// The file object.
    pub(crate) fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.data.len(),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
            "expires_at": null,
        })
    }
}

/// Every file, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Files {
    files: Vec<File>,
    /// Files stored since start or reset, which seeds their ids.
    stored: u64,
}

impl Files {
    /// Stores a file and returns its id.
    pub(crate) fn add(&mut self, filename: String, purpose: &str, data: Bytes) -> String {
        let seed = format!("{}:{filename}:{}", self.stored, data.len());
        self.stored = self.stored.saturating_add(1);
        let id = response_id("file-", seed.as_bytes());
        self.files.push(File {
            id: id.clone(),
            filename,
            purpose: purpose.to_owned(),
            created_at: unix_now(),
            data,
        });
        id
    }

    pub(crate) fn get(&self, id: &str) -> Option<&File> {
        self.files.iter().find(|file| file.id == id)
    }

    fn remove(&mut self, id: &str) -> Option<File> {
        let index = self.files.iter().position(|file| file.id == id)?;
        Some(self.files.remove(index))
    }
}

/// The 404 for an unknown file id.
pub(crate) fn no_such_file(param: &str, id: &str) -> ApiError {
    ApiError::not_found(param, format!("No such File object: {id}"))
}

pub(crate) async fn upload(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        ApiError::invalid(
            "file",
            "Expected a multipart/form-data body with a boundary",
        )
    })?;
    let parts = multipart::parts(&body, &boundary)
        .ok_or_else(|| ApiError::invalid("file", "The multipart body could not be parsed"))?;
    let purpose = parts
        .iter()
        .find(|part| part.name == "purpose")
        .map(|part| String::from_utf8_lossy(&part.data).trim().to_owned())
        .ok_or_else(|| ApiError::invalid("purpose", "Missing required parameter: 'purpose'."))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            "purpose",
            format!(
                "Invalid value for 'purpose': {purpose:?}. Supported values are: {}.",
                PURPOSES.join(", ")
            ),
        ));
    }
    let file = parts
        .into_iter()
        .find(|part| part.name == "file")
        .ok_or_else(|| ApiError::invalid("file", "Missing required parameter: 'file'."))?;
    let filename = file.filename.unwrap_or_else(|| "upload".to_owned());
    let mut store = shared.batches();
    let id = store.files.add(filename, &purpose, file.data);
    let object = store.files.get(&id).map(File::object).unwrap_or_default();
    Ok(Json(object))
}

#[derive(Deserialize)]
pub(crate) struct ListParams {
    purpose: Option<String>,
}

pub(crate) async fn list(
    State(shared): State<Shared>,
    Query(params): Query<ListParams>,
) -> Json<Value> {
    let store = shared.batches();
    let data: Vec<Value> = store
        .files
        .files
        .iter()
        .rev()
        .filter(|file| params.purpose.as_ref().is_none_or(|p| *p == file.purpose))
        .map(File::object)
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false}))
}

pub(crate) async fn get(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = shared.batches();
    let file = store
        .files
        .get(&id)
        .ok_or_else(|| no_such_file("id", &id))?;
    Ok(Json(file.object()))
}

pub(crate) async fn content(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let data = shared
        .batches()
        .files
        .get(&id)
        .map(|file| file.data.clone())
        .ok_or_else(|| no_such_file("id", &id))?;
    let content_type = HeaderValue::from_static("application/octet-stream");
    Ok(([(CONTENT_TYPE, content_type)], Body::from(data)).into_response())
}

pub(crate) async fn delete(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    shared
        .batches()
        .files
        .remove(&id)
        .ok_or_else(|| no_such_file("id", &id))?;
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_file_and_restart_with_the_numbering() {
        let mut files = Files::default();
        let a = files.add("a.jsonl".into(), "batch", Bytes::from("x"));
        let b = files.add("a.jsonl".into(), "batch", Bytes::from("x"));
        assert_ne!(a, b);
        assert!(a.starts_with("file-"));
        assert_eq!(files.get(&a).unwrap().data, "x");
        assert!(files.remove(&a).is_some());
        assert!(files.get(&a).is_none());
        let mut again = Files::default();
        assert_eq!(again.add("a.jsonl".into(), "batch", Bytes::from("x")), a);
    }
}
