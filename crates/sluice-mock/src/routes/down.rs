//! The down switch as middleware: while the mock is down (`POST
//! /mock/admin/down`), every `/v1` call is answered 503 at once, in the
//! route's own error shape, counted and not billed.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::bill::Refusal;
use crate::error::{AnthropicError, ApiError};
use crate::state::Shared;

/// For the OpenAI-compatible routes.
pub(super) async fn openai(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    if shared.is_down() {
        shared.refused(Refusal::Down);
        return ApiError::down().into_response();
    }
    next.run(request).await
}

/// For `/v1/messages`.
pub(super) async fn anthropic(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    if shared.is_down() {
        shared.refused(Refusal::Down);
        return AnthropicError(ApiError::down()).into_response();
    }
    next.run(request).await
}
