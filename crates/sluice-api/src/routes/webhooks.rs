//! Webhooks in the API: the tenant's signing secret, its endpoints, and
//! each job's deliveries (with manual redelivery). The target of each
//! submitted job is the submission's stage 3 (`submission::targets`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_core::webhook::{EventKind, WebhookMessage};
use sluice_store::webhooks::{Attempt, Delivery, Endpoint};
use utoipa::ToSchema;

use crate::extract::{Caller, JsonBody, RawBody};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::submission::targets::check_resolved;

/// The default overlap of a rotated secret: the old one signs for a day.
const DEFAULT_OVERLAP_S: u64 = 86_400;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Seconds the replaced secret keeps signing (default 86400, at most
    /// 30 days).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub overlap_s: Option<u64>,
}

/// The longest overlap a rotation may ask for: 30 days.
const MAX_OVERLAP_S: u64 = 30 * 86_400;

/// The overlap a rotation asks for; an empty body (or `null`) asks for the
/// default.
fn overlap(body: &[u8]) -> Result<Duration, ApiError> {
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::InvalidRequest(format!("expected {{\"overlap_s\": N}}: {e}"))
    };
    let request: Option<RotateRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // An object, or null; serde would also read a struct from a list.
        match serde_json::from_slice(body).map_err(|e| invalid(&e))? {
            serde_json::Value::Null => None,
            object @ serde_json::Value::Object(_) => {
                Some(serde_json::from_value(object).map_err(|e| invalid(&e))?)
            }
            other => return Err(invalid(&format!("got {other}"))),
        }
    };
    let overlap_s = request
        .and_then(|r| r.overlap_s)
        .unwrap_or(DEFAULT_OVERLAP_S);
    if overlap_s > MAX_OVERLAP_S {
        return Err(ApiError::InvalidRequest(format!(
            "`overlap_s` must be at most {MAX_OVERLAP_S} (30 days; got {overlap_s})"
        )));
    }
    Ok(Duration::from_secs(overlap_s))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    /// `whsec_…`: shown this once.
    pub secret: String,
    /// Until when the replaced secret (if any) still signs too.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

fn secret_view(secret: &sluice_core::webhook::Secret, overlap: Duration) -> SecretView {
    SecretView {
        secret: secret.expose().to_owned(),
        previous_valid_until: Some(
            Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default(),
        ),
    }
}

/// Create (or rotate) the tenant's signing secret for the URLs its jobs name.
#[utoipa::path(post, path = "/v1/webhook-secret", request_body = Option<RotateRequest>,
    responses((status = 201, body = SecretView, description = "The new secret, shown once; the old one signs on for overlap_s"),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_tenant_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let overlap = overlap(&body)?;
    let secret = state
        .webhooks
        .rotate_tenant_secret(&caller.tenant_id, overlap)
        .await?;
    Ok((StatusCode::CREATED, Json(secret_view(&secret, overlap))).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    #[schema(value_type = String)]
    pub url: url::Url,
    /// By default every terminal event.
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewEndpointView {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: shown this once.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub object: &'static str,
    pub data: Vec<Endpoint>,
}

/// Register an endpoint for the tenant's jobs that name no webhook.
#[utoipa::path(post, path = "/v1/webhook-endpoints", request_body = EndpointRequest,
    responses((status = 201, body = NewEndpointView, description = "The endpoint, with its secret shown once"),
              (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(raw): JsonBody,
) -> Result<Response, ApiError> {
    let request: EndpointRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::InvalidRequest(format!("expected {{\"url\", \"events\"}}: {e}")))?;
    state
        .config
        .webhooks
        .policy()
        .check_url(&request.url)
        .map_err(ApiError::InvalidWebhook)?;
    check_resolved(&state, &request.url).await?;
    let events = request.events.unwrap_or_else(|| EventKind::ALL.to_vec());
    if events.is_empty() {
        return Err(ApiError::InvalidWebhook("`events` is empty".into()));
    }
    let (endpoint, secret) = state
        .webhooks
        .create_endpoint(&caller.tenant_id, request.url.as_str(), &events)
        .await?;
    state.endpoints.forget(&caller.tenant_id).await;
    let view = NewEndpointView {
        endpoint,
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The tenant's endpoints (without their secrets).
#[utoipa::path(get, path = "/v1/webhook-endpoints",
    responses((status = 200, body = EndpointList), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<EndpointList>, ApiError> {
    let data = state.webhooks.list_endpoints(&caller.tenant_id).await?;
    Ok(Json(EndpointList {
        object: "list",
        data,
    }))
}

/// Delete an endpoint: it gets nothing more.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state
        .webhooks
        .delete_endpoint(&caller.tenant_id, &id)
        .await?
    {
        return Err(ApiError::WebhookNotFound(format!(
            "no webhook endpoint {id}"
        )));
    }
    state.endpoints.forget(&caller.tenant_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Give an endpoint a new secret; the old one signs on for `overlap_s`.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", params(("id" = String, Path)),
    request_body = Option<RotateRequest>,
    responses((status = 200, body = SecretView), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_endpoint_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<SecretView>, ApiError> {
    let overlap = overlap(&body)?;
    let secret = state
        .webhooks
        .rotate_endpoint_secret(&caller.tenant_id, &id, overlap)
        .await?
        .ok_or_else(|| ApiError::WebhookNotFound(format!("no webhook endpoint {id}")))?;
    Ok(Json(secret_view(&secret, overlap)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub object: &'static str,
    pub data: Vec<DeliveryView>,
}

/// A job's webhook deliveries, each with every attempt.
#[utoipa::path(get, path = "/v1/jobs/{id}/deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let job = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let data = state
        .webhooks
        .deliveries_of(&caller.tenant_id, job)
        .await?
        .into_iter()
        .map(|(delivery, attempts)| DeliveryView { delivery, attempts })
        .collect();
    Ok(Json(DeliveryList {
        object: "list",
        data,
    }))
}

/// Deliver again, now, through the whole retry schedule.
#[utoipa::path(post, path = "/v1/jobs/{id}/deliveries/{delivery_id}/redeliver",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Delivery), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn redeliver(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::WebhookNotFound(format!("job {id} has no delivery {delivery_id}"));
    let existing = state.webhooks.delivery(&delivery_id).await?;
    if !existing.is_some_and(|d| d.tenant_id == caller.tenant_id && d.job_id.to_string() == id) {
        return Err(not_found());
    }
    let delivery = state
        .webhooks
        .reopen(&caller.tenant_id, &delivery_id)
        .await?
        .ok_or_else(not_found)?;
    let message = WebhookMessage::Retry {
        delivery_id: delivery.id.clone(),
        attempt: delivery.attempts + 1,
        step: 0,
        not_before: Utc::now(),
    };
    let published = state
        .webhook_queue
        .publish_webhooks(vec![(Bytes::from(encode_retry(&message)?), 0)])
        .await;
    if let Some(Err(e)) = published.into_iter().next() {
        return Err(ApiError::QueueUnavailable(e.to_string()));
    }
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}

/// A retry message's bytes; one that cannot be encoded is never sent empty.
fn encode_retry(message: &WebhookMessage) -> Result<Vec<u8>, ApiError> {
    message
        .encode()
        .map_err(|e| ApiError::QueueUnavailable(format!("cannot encode the retry: {e}")))
}
