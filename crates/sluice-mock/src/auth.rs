//! The optional API key: when [`MockOptions::api_key`](crate::MockOptions)
//! is set, requests must carry `Authorization: Bearer <key>`, or
//! `x-api-key: <key>` on the Anthropic route.

use std::fmt;
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use crate::error::{ApiError, Dialect};
use crate::state::Shared;

/// Anthropic's API key header.
const X_API_KEY: &str = "x-api-key";

/// The key the mock requires: not blank, and never shown by `Debug`, so
/// that it cannot reach a log.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct ApiKey(String);

impl ApiKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a text is not an [`ApiKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlankKeyError;

impl fmt::Display for BlankKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the API key must not be empty")
    }
}

impl std::error::Error for BlankKeyError {}

impl TryFrom<String> for ApiKey {
    type Error = BlankKeyError;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        if key.trim().is_empty() {
            return Err(BlankKeyError);
        }
        Ok(Self(key))
    }
}

impl FromStr for ApiKey {
    type Err = BlankKeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Self::try_from(key.to_owned())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Middleware that answers 401, in the route's dialect, unless the request
/// carries the key where that dialect sends it.
pub(crate) async fn require_key(
    State((shared, dialect)): State<(Shared, Dialect)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &shared.options().api_key else {
        return next.run(request).await;
    };
    if presented(dialect, request.headers()) == Some(expected.as_str()) {
        next.run(request).await
    } else {
        let how = match dialect {
            Dialect::OpenAi => "Authorization: Bearer <key>",
            Dialect::Anthropic => "x-api-key: <key>",
        };
        dialect.respond(ApiError::unauthorized(how))
    }
}

/// The key the request carries, where `dialect` sends it.
fn presented(dialect: Dialect, headers: &HeaderMap) -> Option<&str> {
    let header = match dialect {
        Dialect::OpenAi => AUTHORIZATION.as_str(),
        Dialect::Anthropic => X_API_KEY,
    };
    let value = headers.get(header)?.to_str().ok()?;
    match dialect {
        Dialect::OpenAi => bearer_token(value),
        Dialect::Anthropic => Some(value.trim()),
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
    use super::*;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("sk-1"), None);
    }

    #[test]
    fn a_blank_key_is_refused() {
        assert_eq!(" ".parse::<ApiKey>(), Err(BlankKeyError));
        assert_eq!("sk-1".parse::<ApiKey>().map(|k| k.0), Ok("sk-1".to_owned()));
    }
}
