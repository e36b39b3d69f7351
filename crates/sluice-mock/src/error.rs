//! Errors in the OpenAI shape:
//! `{"error": {"message", "type", "param", "code"}}`, so SDKs raise their
//! usual exceptions against the mock.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

const INVALID_REQUEST: &str = "invalid_request_error";

impl ApiError {
    /// 400: the request is well-formed JSON but a field is missing or wrong.
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message.into(), Some(param.to_owned()), None)
    }

    /// 400: the body is not JSON, or not the JSON the endpoint expects.
    pub(crate) fn unparsable(err: &serde_json::Error) -> Self {
        Self::bad_request(
            format!("We could not parse the JSON body of your request: {err}"),
            None,
            Some("invalid_json"),
        )
    }

    /// 400: the request asks for something the mock does not do.
    pub(crate) fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message.into(), Some(param.to_owned()), Some("unsupported"))
    }

    /// 401: the API key is missing or wrong.
    pub(crate) fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: ErrorBody {
                message: "Incorrect or missing API key: send `Authorization: Bearer <key>`."
                    .to_owned(),
                kind: INVALID_REQUEST,
                param: None,
                code: Some("invalid_api_key"),
            },
        }
    }

    /// 404: no such route.
    pub(crate) fn unknown_url(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: ErrorBody {
                message: format!("Unknown request URL: {method} {path}."),
                kind: INVALID_REQUEST,
                param: None,
                code: Some("unknown_url"),
            },
        }
    }

    fn bad_request(message: String, param: Option<String>, code: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                message,
                kind: INVALID_REQUEST,
                param,
                code,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Envelope { error: &self.body })).into_response()
    }
}
