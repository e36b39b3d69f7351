//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice", description = "Queued, batched, metered LLM inference."),
    paths(crate::jobs::submit, crate::jobs::submit_batch, crate::jobs::get_job, crate::jobs::cancel, crate::usage::report, crate::budget::show, crate::cache::clear,
        crate::webhooks::deliveries, crate::webhooks::redeliver, crate::webhooks::rotate_tenant_secret,
        crate::webhooks::create_endpoint, crate::webhooks::list_endpoints, crate::webhooks::delete_endpoint,
        crate::webhooks::rotate_endpoint_secret),
    components(schemas(
        crate::submit::JobRequest,
        crate::submit::BatchRequest,
        crate::view::JobView,
        crate::view::BatchView,
        crate::problem::Problem,
        crate::usage::UsageReport,
        crate::budget::BudgetView,
        crate::webhooks::RotateRequest,
        crate::webhooks::SecretView,
        crate::webhooks::EndpointRequest,
        crate::webhooks::NewEndpointView,
        crate::webhooks::EndpointList,
        crate::webhooks::DeliveryView,
        crate::webhooks::DeliveryList,
        sluice_store::webhooks::Endpoint,
        sluice_store::webhooks::Delivery,
        sluice_store::webhooks::Attempt,
        sluice_store::webhooks::DeliveryState,
        sluice_core::webhook::WebhookSpec,
        sluice_core::webhook::EventKind,
        sluice_core::JobRecord,
        sluice_core::JobStatus,
        sluice_core::Usage,
        sluice_core::JobError,
        sluice_core::Priority,
        sluice_core::Endpoint,
        sluice_core::cache::CacheOptions,
        sluice_core::cache::CacheMode,
        sluice_core::cache::CacheInfo,
        sluice_core::cache::CacheKind,
        crate::cache::Cleared,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
