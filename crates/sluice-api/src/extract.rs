//! Request extractors whose rejections are problem+json: a JSON body (with
//! the size limit) and the caller's key.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde_json::Value;
use sluice_store::tenants::{hash_key, Principal};

use crate::problem::ApiError;
use crate::state::AppState;

/// A body within the size limit, as bytes.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.api.max_body_bytes;
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge(limit)
                } else {
                    ApiError::MalformedJson(e.body_text())
                }
            })
    }
}

/// A body that parsed as JSON.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))
    }
}

pub use crate::caches::KEY_CACHE_TTL;

/// The tenant a request is from.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <key> header",
            ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <key>`",
            ))?;
        let hash = hash_key(key);
        if let Some(principal) = state.keys.0.get(&hash).await {
            return Ok(Caller(principal));
        }
        let principal = state
            .tenants
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized(
                "unknown, revoked or expired API key",
            ))?;
        state.keys.0.insert(hash, principal.clone()).await;
        Ok(Caller(principal))
    }
}
