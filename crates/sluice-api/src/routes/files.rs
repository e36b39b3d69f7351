//! OpenAI's Files API, for batches: `POST /v1/files` (multipart, `purpose`
//! then `file`), `GET /v1/files`, `GET /v1/files/{id}`,
//! `GET /v1/files/{id}/content` and `DELETE /v1/files/{id}`, with OpenAI's
//! object shapes and errors. A file is its tenant's (another's is a 404),
//! is stored as it streams in and streamed back out
//! (`sluice_store::files`), and is kept for `[files] retention_s`.

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sluice_store::files::{FileLimits, FileMeta, FileQuery, NewFile, PutError};
use utoipa::{IntoParams, ToSchema};

use crate::extract::Caller;
use crate::problem::ApiError;
use crate::state::AppState;

/// The only purpose Sluice keeps files for.
const PURPOSE: &str = "batch";
/// Most files one list answers (OpenAI's limit).
const MAX_LIST: usize = 10_000;
/// How long an upload may take beyond the request timeout: a 200 MB file
/// over a slow link.
pub const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A file, as OpenAI's Files API shows one.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; null when the file is kept until deleted.
    pub expires_at: Option<i64>,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub status_details: Option<String>,
}

impl FileObject {
    pub fn of(meta: &FileMeta) -> Self {
        Self {
            id: meta.id.clone(),
            object: "file",
            bytes: meta.bytes,
            created_at: meta.created_at.timestamp(),
            expires_at: meta.expires_at.map(|at| at.timestamp()),
            filename: meta.filename.clone(),
            purpose: meta.purpose.clone(),
            status: "processed",
            status_details: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub object: &'static str,
    pub data: Vec<FileObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileDeleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

/// What `POST /v1/files` takes (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileUpload {
    /// `batch`; sent before `file`.
    purpose: String,
    /// The JSONL content.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only files after this id, in the order asked.
    pub after: Option<String>,
    /// Most files to answer, 1 to 10,000 (default 10,000).
    pub limit: Option<usize>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
    /// Only files of this purpose.
    pub purpose: Option<String>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::FileNotFound(format!("No such File object: {id}"))
}

/// Uploads a file for batches.
#[utoipa::path(post, path = "/v1/files",
    request_body(content = FileUpload, content_type = "multipart/form-data"),
    responses((status = 200, body = FileObject),
              (status = 400, body = super::openai::OpenAiError, description = "Not multipart, no `file`, or a `purpose` other than `batch`"),
              (status = 413, body = super::openai::OpenAiError, description = "Over `[files] max_bytes` or `max_lines`")),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::InvalidRequest(format!("the multipart body cannot be read: {e}"))
    };
    let mut multipart = multipart.map_err(|e| {
        ApiError::InvalidRequest(format!("a file upload is multipart/form-data: {e}"))
    })?;
    let mut purpose = None;
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(bad)?),
            Some("file") => {
                match purpose.as_deref() {
                    Some(PURPOSE) => {}
                    Some(other) => {
                        return Err(ApiError::InvalidRequest(format!(
                            "purpose {other:?} is not kept here: Sluice stores files for batches (purpose \"batch\")"
                        )))
                    }
                    None => {
                        return Err(ApiError::InvalidRequest(
                            "`purpose` must come before `file` in the form".into(),
                        ))
                    }
                }
                let now = Utc::now();
                let file = NewFile {
                    id: NewFile::new_id(),
                    tenant_id: caller.tenant_id.clone(),
                    purpose: PURPOSE.to_owned(),
                    filename: field.file_name().unwrap_or("upload.jsonl").to_owned(),
                    created_at: now,
                    expires_at: state.config.files.expires_at(now),
                };
                let limits = FileLimits {
                    max_bytes: state.config.files.max_bytes,
                    max_lines: state.config.files.max_lines,
                };
                let content = field.map_err(|e| e.to_string()).boxed();
                let meta = state
                    .files
                    .put(file, limits, content)
                    .await
                    .map_err(|e| match e {
                        PutError::TooLarge(why) => ApiError::FileTooLarge(why),
                        PutError::Unreadable(why) => ApiError::InvalidRequest(why),
                        PutError::Store(e) => e.into(),
                    })?;
                return Ok(Json(FileObject::of(&meta)));
            }
            // Other fields are not OpenAI's; they are read past.
            _ => {}
        }
    }
    Err(ApiError::InvalidRequest("the form has no `file`".into()))
}

/// The caller's files, newest first unless `order=asc`.
#[utoipa::path(get, path = "/v1/files", params(ListParams),
    responses((status = 200, body = FileList),
              (status = 400, body = super::openai::OpenAiError, description = "A bad `limit` or `order`")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = params.limit.unwrap_or(MAX_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be 1 to {MAX_LIST} (got {limit})"
        )));
    }
    let oldest_first = match params.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "order must be asc or desc (got {other:?})"
            )))
        }
    };
    let query = FileQuery {
        purpose: params.purpose,
        after: params.after,
        // One more than asked says whether there are more.
        limit: limit + 1,
        oldest_first,
    };
    let mut files = state
        .files
        .list(&caller.tenant_id, &query, Utc::now())
        .await?;
    let has_more = files.len() > limit;
    files.truncate(limit);
    Ok(Json(FileList {
        object: "list",
        first_id: files.first().map(|f| f.id.clone()),
        last_id: files.last().map(|f| f.id.clone()),
        data: files.iter().map(FileObject::of).collect(),
        has_more,
    }))
}

/// One of the caller's files.
#[utoipa::path(get, path = "/v1/files/{id}", params(("id" = String, Path)),
    responses((status = 200, body = FileObject),
              (status = 404, body = super::openai::OpenAiError, description = "No such file for this tenant")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, ApiError> {
    match state.files.get(&caller.tenant_id, &id, Utc::now()).await? {
        Some(meta) => Ok(Json(FileObject::of(&meta))),
        None => Err(not_found(&id)),
    }
}

/// A file's content, as uploaded, streamed.
#[utoipa::path(get, path = "/v1/files/{id}/content", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = String, description = "The file's bytes"),
              (status = 404, body = super::openai::OpenAiError, description = "No such file for this tenant")),
    security(("bearer" = [])))]
pub async fn content(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let Some(meta) = state.files.get(&caller.tenant_id, &id, now).await? else {
        return Err(not_found(&id));
    };
    let Some(parts) = state.files.read(&caller.tenant_id, &id, now).await? else {
        return Err(not_found(&id));
    };
    let mut response = Body::from_stream(parts).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.bytes));
    Ok(response)
}

/// Deletes one of the caller's files.
#[utoipa::path(delete, path = "/v1/files/{id}", params(("id" = String, Path)),
    responses((status = 200, body = FileDeleted),
              (status = 404, body = super::openai::OpenAiError, description = "No such file for this tenant")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<FileDeleted>, ApiError> {
    if !state.files.delete(&caller.tenant_id, &id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(FileDeleted {
        id,
        object: "file",
        deleted: true,
    }))
}
