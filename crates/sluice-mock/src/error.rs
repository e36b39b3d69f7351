//! Errors in the OpenAI shape:
//! `{"error": {"message", "type", "param", "code"}}`, so SDKs raise their
//! usual exceptions against the mock; [`AnthropicError`] renders the same
//! errors in Anthropic's shape for `/v1/messages`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answered to the client, with any extra headers (`Retry-After`
/// and `x-ratelimit-*` on a 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// A list rather than a `HeaderMap`, which would make every `Result`
    /// of the handlers several times larger.
    headers: Vec<(HeaderName, HeaderValue)>,
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

    /// 401: the API key is missing or wrong; `how` says how to send it.
    pub(crate) fn unauthorized(how: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            format!("Incorrect or missing API key: send `{how}`."),
            INVALID_REQUEST,
            Some("invalid_api_key"),
        )
    }

    /// 404: no such route.
    pub(crate) fn unknown_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Unknown request URL: {method} {path}."),
            INVALID_REQUEST,
            Some("unknown_url"),
        )
    }

    /// 429: a rate limit is exhausted; `limit` is `"requests"` or
    /// `"tokens"`, the error `type` OpenAI gives.
    pub(crate) fn rate_limited(limit: &'static str, message: String) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            message,
            limit,
            Some("rate_limit_exceeded"),
        )
    }

    /// 500 or 503 from fault injection.
    pub(crate) fn injected(status: StatusCode) -> Self {
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "The server is overloaded or not ready yet (injected by the mock)."
        } else {
            "The server had an error while processing your request (injected by the mock)."
        };
        Self::new(status, message.to_owned(), SERVER_ERROR, None)
    }

    /// 429: a flex request found no capacity (see [`flex`](crate::flex)).
    /// The wording follows OpenAI's "Resource Unavailable"; clients should
    /// key on the status and `code: "resource_unavailable"`.
    pub(crate) fn flex_unavailable() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Resource Unavailable: flex processing has no capacity for this request \
             right now (injected by the mock). Retry later, or send it without \
             service_tier \"flex\"."
                .to_owned(),
            "service_unavailable_error",
            Some("resource_unavailable"),
        )
    }

    /// 404: no such object (a file, a batch); `param` is the id's name.
    pub(crate) fn not_found(param: &str, message: String) -> Self {
        let mut error = Self::new(StatusCode::NOT_FOUND, message, INVALID_REQUEST, None);
        error.body.param = Some(param.to_owned());
        error
    }

    /// 500: a batch line the mock made fail (`batch.line_failure`).
    pub(crate) fn line_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing this batch request (injected by \
             the mock)."
                .to_owned(),
            SERVER_ERROR,
            None,
        )
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The error in OpenAI's shape, `{"error": {…}}`, as a batch output
    /// line's `response.body` carries it.
    pub(crate) fn openai_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": &self.body })
    }

    /// The error in Anthropic's shape, `{"type": "error", "error": {…}}`, as
    /// a message batch's errored result carries it.
    pub(crate) fn anthropic_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_kind(self.status), "message": &self.body.message},
        })
    }

    /// 503: the mock was taken down with `POST /mock/admin/down`.
    pub(crate) fn down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The mock is down; POST /mock/admin/up brings it back.".to_owned(),
            SERVER_ERROR,
            Some("mock_down"),
        )
    }

    /// The same error with `headers` added.
    pub(crate) fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(
            headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        self
    }

    fn new(
        status: StatusCode,
        message: String,
        kind: &'static str,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody {
                message,
                kind,
                param: None,
                code,
            },
            headers: Vec::new(),
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
            headers: Vec::new(),
        }
    }
}

const SERVER_ERROR: &str = "server_error";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            header_map(self.headers),
            Json(Envelope { error: &self.body }),
        )
            .into_response()
    }
}

/// An [`ApiError`] in Anthropic's shape:
/// `{"type": "error", "error": {"type", "message"}}`, the error type
/// following from the status as Anthropic documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnthropicError(pub(crate) ApiError);

impl From<ApiError> for AnthropicError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicBody<'a>,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let ApiError {
            status,
            body,
            headers,
        } = self.0;
        let envelope = AnthropicEnvelope {
            kind: "error",
            error: AnthropicBody {
                kind: anthropic_kind(status),
                message: &body.message,
            },
        };
        (status, header_map(headers), Json(envelope)).into_response()
    }
}

/// Anthropic's error `type` for a status, as Anthropic documents it.
fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Which provider's API a route speaks, and so the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// `error` in this dialect's shape.
    pub(crate) fn respond(self, error: ApiError) -> Response {
        match self {
            Dialect::OpenAi => error.into_response(),
            Dialect::Anthropic => AnthropicError(error).into_response(),
        }
    }
}

fn header_map(headers: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
    headers.into_iter().collect()
}
