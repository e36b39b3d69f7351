//! OpenAI's error shape on the OpenAI-compatible routes. An OpenAI SDK
//! reads `{"error": {"message", "type", "param", "code"}}` and picks its
//! exception by the status, so these routes answer in that shape, with
//! OpenAI's statuses: one table ([`shape`]) maps each of Sluice's refusals,
//! whoever raised it (an extractor, a stage of the pipeline, the request
//! timeout), and a provider's own refusal is answered as the provider
//! answered it.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sluice_core::Rejection;

use crate::problem::Refused;

/// OpenAI's error body, as the OpenAI-compatible routes answer errors.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// OpenAI's status, `type`, `code` and `param` for one of Sluice's
/// refusals (by its problem slug).
fn shape(
    slug: &str,
    status: StatusCode,
) -> (
    StatusCode,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
) {
    const INVALID: &str = "invalid_request_error";
    match slug {
        "malformed-json" | "invalid-request" | "unknown-endpoint" => {
            (StatusCode::BAD_REQUEST, INVALID, None, None)
        }
        "missing-model" => (StatusCode::BAD_REQUEST, INVALID, None, Some("model")),
        "unknown-model" => (
            StatusCode::NOT_FOUND,
            INVALID,
            Some("model_not_found"),
            Some("model"),
        ),
        "unauthorized" => (
            StatusCode::UNAUTHORIZED,
            INVALID,
            Some("invalid_api_key"),
            None,
        ),
        // OpenAI answers a spent quota with 429 `insufficient_quota`.
        "budget-exhausted" => (
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
            None,
        ),
        "rate-limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            None,
        ),
        "not-found" => (StatusCode::NOT_FOUND, INVALID, Some("unknown_url"), None),
        "file-not-found" | "batch-not-found" => (StatusCode::NOT_FOUND, INVALID, None, Some("id")),
        "file-too-large" => (StatusCode::PAYLOAD_TOO_LARGE, INVALID, None, Some("file")),
        "still-running" => (
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            Some("timeout"),
            None,
        ),
        _ if status.is_server_error() => (status, "server_error", None, None),
        _ => (status, INVALID, None, None),
    }
}

/// The error body OpenAI's SDKs read.
fn body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> serde_json::Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// Renders a refusal of Sluice's in OpenAI's shape; any other answer goes
/// through as it is. The headers stay (`Retry-After`, `RateLimit-*`,
/// `WWW-Authenticate`, `Sluice-Job-Id`), but for the body's type.
pub async fn errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(refused) = response.extensions().get::<Refused>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let (status, kind, code, param) = shape(refused.slug, parts.status);
    parts.status = status;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let answer = Json(body(&refused.detail, kind, code, param)).into_response();
    let (answer_parts, payload) = answer.into_parts();
    parts.headers.extend(answer_parts.headers);
    Response::from_parts(parts, payload)
}

/// A provider's refusal, with the provider's status and error.
pub fn rejected(rejection: &Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({"error": rejection.error}))).into_response()
}

/// The 404 of a model that has no route.
pub fn no_model(id: &str) -> Response {
    let message = format!("The model `{id}` does not exist or you do not have access to it.");
    let error = body(
        &message,
        "invalid_request_error",
        Some("model_not_found"),
        Some("model"),
    );
    (StatusCode::NOT_FOUND, Json(error)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_an_openai_status_the_sdks_know() {
        let slugs = [
            ("malformed-json", 400),
            ("invalid-request", 422),
            ("missing-model", 422),
            ("unknown-model", 422),
            ("unauthorized", 401),
            ("budget-exhausted", 402),
            ("rate-limited", 429),
            ("queue-unavailable", 503),
            ("store-unavailable", 503),
            ("timeout", 503),
            ("provider-failed", 502),
            ("still-running", 504),
            ("body-too-large", 413),
            ("not-found", 404),
            ("file-not-found", 404),
            ("batch-not-found", 404),
            ("not-cancelable", 409),
            ("file-too-large", 413),
            ("method-not-allowed", 405),
        ];
        for (slug, status) in slugs {
            let (status, kind, _, _) = shape(slug, StatusCode::from_u16(status).unwrap());
            // 422 and 402 are not OpenAI's; 5xx are its server errors.
            assert!(
                status != StatusCode::UNPROCESSABLE_ENTITY
                    && status != StatusCode::PAYMENT_REQUIRED,
                "{slug}"
            );
            assert_eq!(status.is_server_error(), kind == "server_error", "{slug}");
        }
    }
}
