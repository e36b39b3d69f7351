//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice", description = "Queued, batched, metered LLM inference."),
    paths(super::jobs::submit, super::jobs::submit_batch, super::jobs::get_job, super::jobs::cancel, super::usage::report, super::usage::budget, super::cache::clear,
        super::webhooks::deliveries, super::webhooks::redeliver, super::webhooks::rotate_tenant_secret,
        super::webhooks::create_endpoint, super::webhooks::list_endpoints, super::webhooks::delete_endpoint,
        super::webhooks::rotate_endpoint_secret, super::models::list, super::models::get),
    components(schemas(
        crate::submission::validate::JobRequest,
        crate::submission::validate::BatchRequest,
        crate::view::JobView,
        crate::view::BatchView,
        crate::problem::Problem,
        super::usage::UsageReport,
        super::usage::BudgetView,
        super::webhooks::RotateRequest,
        super::webhooks::SecretView,
        super::webhooks::EndpointRequest,
        super::webhooks::NewEndpointView,
        super::webhooks::EndpointList,
        super::webhooks::DeliveryView,
        super::webhooks::DeliveryList,
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
        super::cache::Cleared,
        super::models::Model,
        super::models::ModelList,
        super::openai::OpenAiError,
        super::openai::OpenAiErrorDetail,
        sluice_core::Rejection,
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
