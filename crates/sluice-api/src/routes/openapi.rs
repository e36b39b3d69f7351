//! The OpenAPI document. Its paths are collected from the router itself
//! (`routes::routes`: a route is registered with its operation, so none can
//! be left out); [`finish`] then states, in one place, what every route
//! may answer whatever its handler says (the key check, the body limit,
//! the request timeout) and the content type each error is sent with.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice", description = "Queued, batched, metered LLM inference."),
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
        super::cache::Samples,
        sluice_core::cache::SemanticSample,
        super::models::Model,
        super::models::ModelList,
        super::files::FileObject,
        super::files::FileList,
        super::files::FileDeleted,
        super::files::FileUpload,
        super::batches::CreateBatch,
        super::batches::BatchObject,
        super::batches::BatchList,
        super::batches::BatchErrors,
        super::batches::BatchError,
        super::batches::RequestCounts,
        super::batches::BatchUsage,
        super::batches::InputTokensDetails,
        super::batches::OutputTokensDetails,
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

const PROBLEM: &str = "#/components/schemas/Problem";
const OPENAI_ERROR: &str = "#/components/schemas/OpenAiError";

/// The document as served: problem+json where that is what is sent, and
/// the answers every route may give beyond its handler's own.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            complete(operation);
        }
    }
    doc
}

/// Whether a response's JSON body is the schema at `location`.
fn is_body(response: &RefOr<Response>, location: &str) -> bool {
    let RefOr::T(response) = response else {
        return false;
    };
    response
        .content
        .values()
        .any(|content| matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location == location))
}

fn error(description: &str, content_type: &str, location: &str) -> RefOr<Response> {
    let schema = RefOr::Ref(Ref::new(location));
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                content_type,
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .build(),
    )
}

fn complete(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    // The OpenAI-compatible routes answer errors in OpenAI's shape.
    let openai = responses.values().any(|r| is_body(r, OPENAI_ERROR));
    let (content_type, location) = if openai {
        ("application/json", OPENAI_ERROR)
    } else {
        ("application/problem+json", PROBLEM)
    };
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            let problem = response.content.get("application/json").is_some_and(
                |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM),
            );
            if problem {
                if let Some(content) = response.content.shift_remove("application/json") {
                    response
                        .content
                        .insert("application/problem+json".to_owned(), content);
                }
            }
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description, content_type, location));
    };
    // Every route is bounded by the request timeout.
    add("503", "Timed out, or a store or the broker did not answer");
    if operation.security.is_some() {
        add("401", "No key, or not a valid one");
    }
    if operation.request_body.is_some() {
        add("400", "The body is not valid JSON");
        add("413", "The body is over the limit");
        add(
            if openai { "400" } else { "422" },
            "The request is not valid",
        );
    }
}
