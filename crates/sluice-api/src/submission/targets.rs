//! Stage 3, webhook targets: a job's own webhook URL is checked against
//! the addresses its host resolves to now, and needs the tenant's signing
//! secret; a job that names no webhook goes to the tenant's registered
//! endpoints, if it has any.
//!
//! Refuses: 422 (`invalid-webhook`). Writes nothing.

use std::net::IpAddr;
use std::sync::Arc;

use sluice_core::webhook::JobWebhook;
use sluice_store::StoreError;

use super::validate::NewJob;
use crate::problem::ApiError;
use crate::state::AppState;

async fn has_endpoints(state: &AppState, tenant: &str) -> Result<bool, ApiError> {
    state
        .endpoints
        .0
        .try_get_with_by_ref(tenant, state.webhooks.has_endpoints(tenant))
        .await
        .map_err(|e: Arc<StoreError>| ApiError::StoreUnavailable(e.to_string()))
}

/// Refuses a URL whose host resolves, now, to an address the policy refuses.
pub async fn check_resolved(state: &AppState, url: &url::Url) -> Result<(), ApiError> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(()); // a literal address: checked with the URL
    };
    let policy = state.config.webhooks.policy();
    if policy.host_allowed(host) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            ApiError::InvalidWebhook(format!("cannot resolve the webhook host {host}: {e}"))
        })?
        .map(|a| a.ip())
        .collect();
    for ip in addrs {
        policy
            .check_ip(host, ip)
            .map_err(ApiError::InvalidWebhook)?;
    }
    Ok(())
}

/// Completes each job's webhook target (see the module docs).
pub(super) async fn resolve(
    state: &AppState,
    tenant: &str,
    jobs: &mut [NewJob],
) -> Result<(), ApiError> {
    let mut secret_checked = false;
    let mut endpoints = None;
    let many = jobs.len() > 1;
    for (i, job) in jobs.iter_mut().enumerate() {
        let at = |e: ApiError| match (e, many) {
            (ApiError::InvalidWebhook(d), true) => {
                ApiError::InvalidWebhook(format!("jobs[{i}]: {d}"))
            }
            (e, _) => e,
        };
        match &job.record.webhook {
            Some(JobWebhook::Url(spec)) => {
                check_resolved(state, &spec.url).await.map_err(at)?;
                if !secret_checked {
                    if state.webhooks.tenant_secrets(tenant).await?.is_none() {
                        return Err(ApiError::InvalidWebhook(
                            "this tenant has no webhook signing secret yet: create one with \
                             POST /v1/webhook-secret (or `sluice admin webhook secret --tenant NAME`)"
                                .into(),
                        ));
                    }
                    secret_checked = true;
                }
            }
            Some(JobWebhook::Endpoints) => {}
            None => {
                let has = match endpoints {
                    Some(has) => has,
                    None => *endpoints.insert(has_endpoints(state, tenant).await?),
                };
                if has {
                    job.record.webhook = Some(JobWebhook::Endpoints);
                    job.message.webhook = Some(JobWebhook::Endpoints);
                }
            }
        }
    }
    Ok(())
}
