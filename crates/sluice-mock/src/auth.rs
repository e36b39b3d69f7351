//! The optional API key: when [`MockOptions::api_key`](crate::MockOptions)
//! is set, requests must carry `Authorization: Bearer <key>`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::Shared;

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
        ApiError::unauthorized().into_response()
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
