//! The optional API key: when [`MockOptions::api_key`](crate::MockOptions)
//! is set, requests must carry `Authorization: Bearer <key>`, or
//! `x-api-key: <key>` on the Anthropic route.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AnthropicError, ApiError};
use crate::state::Shared;

/// Anthropic's API key header.
const X_API_KEY: &str = "x-api-key";

/// Middleware for `/v1/messages`: answers 401 in Anthropic's shape unless
/// the request carries the key in `x-api-key`.
pub(crate) async fn require_x_api_key(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = shared.options().api_key.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(X_API_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    if presented == Some(expected) {
        next.run(request).await
    } else {
        AnthropicError(ApiError::unauthorized("x-api-key: <key>")).into_response()
    }
}

/// Middleware that answers 401 unless the request carries the key.
pub(crate) async fn require_key(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = shared.options().api_key.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    if presented == Some(expected) {
        next.run(request).await
    } else {
        ApiError::unauthorized("Authorization: Bearer <key>").into_response()
    }
}

/// The token of a `Bearer` authorization value (the scheme is
/// case-insensitive, as RFC 9110 says).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("sk-1"), None);
    }
}
