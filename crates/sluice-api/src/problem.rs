//! Errors as `application/problem+json` (RFC 9457). Each kind has a stable
//! `type` URI (`/problems/<slug>`, relative to the API's address), a status
//! and a human `detail`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// Every error the API answers with.
#[derive(Debug)]
pub enum ApiError {
    MalformedJson(String),
    InvalidRequest(String),
    MissingModel(String),
    UnknownModel(String),
    UnknownEndpoint(String),
    BodyTooLarge(usize),
    Unauthorized(&'static str),
    JobNotFound(String),
    NotFound(String),
    /// A known path asked with a method it does not answer.
    MethodNotAllowed(String),
    NotCancelable(String),
    QueueUnavailable(String),
    StoreUnavailable(String),
    /// The tenant has spent its monthly budget.
    BudgetExhausted(String),
    /// An `Idempotency-Key` reused for a different request.
    IdempotencyKeyReused(String),
    /// A synchronous call's job failed at the provider.
    ProviderFailed(String),
    /// A synchronous call's job did not end in time.
    SyncTimeout(String),
    /// The request took longer than the API's request timeout (seconds).
    Timeout(u64),
    /// The first request with this `Idempotency-Key` has not finished.
    IdempotencyInProgress(String),
    /// A webhook URL that may not be used (scheme, address, no secret).
    InvalidWebhook(String),
    /// No such webhook endpoint or delivery for this tenant.
    WebhookNotFound(String),
    /// No such file for this tenant (the Files API).
    FileNotFound(String),
    /// An upload over `[files] max_bytes` or `max_lines`.
    FileTooLarge(String),
    /// No such batch for this tenant (the Batch API).
    BatchNotFound(String),
    /// Over the tenant's rate limit; the headers say when to come back.
    RateLimited {
        detail: String,
        headers: RateLimitHeaders,
        retry_after_s: u64,
    },
}

/// The `RateLimit-*` headers (IETF draft): the binding limit, what is left
/// of it, and seconds until the window frees up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_s: u64,
}

impl RateLimitHeaders {
    pub fn apply(&self, headers: &mut axum::http::HeaderMap) {
        for (name, value) in [
            ("ratelimit-limit", self.limit),
            ("ratelimit-remaining", self.remaining),
            ("ratelimit-reset", self.reset_s),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use ApiError::*;
        match self {
            MalformedJson(d) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                d.clone(),
            ),
            InvalidRequest(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
                d.clone(),
            ),
            MissingModel(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-model",
                "Missing model",
                d.clone(),
            ),
            UnknownModel(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-model",
                "Unknown model",
                d.clone(),
            ),
            UnknownEndpoint(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-endpoint",
                "Unknown endpoint",
                d.clone(),
            ),
            BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the request body is over the limit of {limit} bytes"),
            ),
            Unauthorized(d) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                (*d).to_owned(),
            ),
            JobNotFound(id) => (
                StatusCode::NOT_FOUND,
                "job-not-found",
                "Job not found",
                format!("no job {id} for this tenant (it may have passed its retention)"),
            ),
            NotFound(path) => (
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("no route {path}"),
            ),
            MethodNotAllowed(d) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                d.clone(),
            ),
            NotCancelable(d) => (
                StatusCode::CONFLICT,
                "not-cancelable",
                "Job cannot be canceled",
                d.clone(),
            ),
            QueueUnavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "queue-unavailable",
                "Queue unavailable",
                format!(
                    "the job was not accepted: the broker did not confirm it ({d}); retry later"
                ),
            ),
            ProviderFailed(d) => (
                StatusCode::BAD_GATEWAY,
                "provider-failed",
                "Provider failed",
                d.clone(),
            ),
            SyncTimeout(d) => (
                StatusCode::GATEWAY_TIMEOUT,
                "still-running",
                "Job still running",
                d.clone(),
            ),
            Timeout(limit) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                format!(
                    "the request was not answered within {limit} s (a backend is slow); retry \
                     later, with the same Idempotency-Key for a submission"
                ),
            ),
            IdempotencyInProgress(d) => (
                StatusCode::CONFLICT,
                "idempotency-in-progress",
                "Request in progress",
                d.clone(),
            ),
            IdempotencyKeyReused(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                d.clone(),
            ),
            BudgetExhausted(d) => (
                StatusCode::PAYMENT_REQUIRED,
                "budget-exhausted",
                "Monthly budget exhausted",
                d.clone(),
            ),
            InvalidWebhook(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-webhook",
                "Invalid webhook",
                d.clone(),
            ),
            WebhookNotFound(d) => (
                StatusCode::NOT_FOUND,
                "webhook-not-found",
                "Webhook not found",
                d.clone(),
            ),
            FileNotFound(d) => (
                StatusCode::NOT_FOUND,
                "file-not-found",
                "File not found",
                d.clone(),
            ),
            BatchNotFound(d) => (
                StatusCode::NOT_FOUND,
                "batch-not-found",
                "Batch not found",
                d.clone(),
            ),
            FileTooLarge(d) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "file-too-large",
                "File too large",
                d.clone(),
            ),
            RateLimited { detail, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limit exceeded",
                detail.clone(),
            ),
            StoreUnavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
                format!("the job store did not answer ({d}); retry later"),
            ),
        }
    }

    /// The problem's kind, as its `type` ends: `rate-limited`, say.
    pub fn slug(&self) -> &'static str {
        self.parts().1
    }

    pub fn problem(&self) -> Problem {
        let (status, slug, title, detail) = self.parts();
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            instance: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (_, _, title, detail) = self.parts();
        write!(f, "{title}: {detail}")
    }
}

impl std::error::Error for ApiError {}

impl From<sluice_store::StoreError> for ApiError {
    fn from(e: sluice_store::StoreError) -> Self {
        Self::StoreUnavailable(e.to_string())
    }
}

/// Which problem an error response carries, in its extensions: the routes
/// that answer in another shape (the OpenAI-compatible ones) render it
/// again from this.
#[derive(Clone, Debug)]
pub struct Refused {
    pub slug: &'static str,
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let refused = Refused {
            slug: self.slug(),
            detail: problem.detail.clone(),
        };
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(detail = %problem.detail, "{}", problem.title);
        }
        // A problem always serializes; should it not, axum answers 500.
        let mut response = (status, axum::Json(problem)).into_response();
        response.extensions_mut().insert(refused);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::RateLimited {
            headers,
            retry_after_s,
            ..
        } = &self
        {
            headers.apply(response.headers_mut());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
