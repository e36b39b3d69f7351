//! `GET /v1/models` and `GET /v1/models/{id}`: the models a caller may
//! use, as OpenAI lists them: every `[[models]]` route of the config.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::Caller;
use crate::state::AppState;

/// A model, as OpenAI's `GET /v1/models` shows one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    /// When this API process started (Unix seconds): routes come from its
    /// config.
    pub created: i64,
    pub owned_by: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

fn model(state: &AppState, id: &str) -> Model {
    Model {
        id: id.to_owned(),
        object: "model",
        created: state.started.timestamp(),
        owned_by: "sluice",
    }
}

/// The models routed for the caller.
#[utoipa::path(get, path = "/v1/models",
    responses((status = 200, body = ModelList), (status = 401, body = super::openai::OpenAiError)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Caller(_): Caller) -> Json<ModelList> {
    let data = state
        .config
        .models
        .iter()
        .map(|m| model(&state, &m.name))
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

/// One model, or OpenAI's 404 (`model_not_found`).
#[utoipa::path(get, path = "/v1/models/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Model), (status = 401, body = super::openai::OpenAiError),
              (status = 404, body = super::openai::OpenAiError, description = "No route for this model (`model_not_found`)")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(id): Path<String>,
) -> Response {
    match state.config.route(&id) {
        Some(_) => Json(model(&state, &id)).into_response(),
        None => super::openai::no_model(&id),
    }
}
