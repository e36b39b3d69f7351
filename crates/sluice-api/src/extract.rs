//! Request extractors whose rejections are problem+json: a JSON body (with
//! the size limit) and the caller's key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde_json::Value;
use sluice_store::tenants::{hash_key, Principal};

use crate::problem::ApiError;
use crate::AppState;

/// A body that parsed as JSON.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = AppState::from_ref(state).config.api.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge(limit)
            } else {
                ApiError::MalformedJson(e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))
    }
}

/// How long a checked key is trusted before it is looked up again; a
/// revoked key stops working within this time on every replica.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Keys checked recently, by hash.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, hash: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 10_000 {
            entries.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
        }
        entries.insert(hash, (principal, Instant::now()));
    }
}

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
        if let Some(principal) = state.keys.get(&hash) {
            return Ok(Caller(principal));
        }
        let principal = state
            .tenants
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized(
                "unknown, revoked or expired API key",
            ))?;
        state.keys.put(hash, principal.clone());
        Ok(Caller(principal))
    }
}
