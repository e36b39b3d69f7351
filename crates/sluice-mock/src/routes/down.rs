//! The down switch as middleware: while the mock is down (`POST
//! /mock/admin/down`), every `/v1` call is answered 503 at once, in the
//! route's own error shape, counted and not billed.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::bill::Refusal;
use crate::error::{ApiError, Dialect};
use crate::state::Shared;

pub(super) async fn refuse_while_down(
    State((shared, dialect)): State<(Shared, Dialect)>,
    request: Request,
    next: Next,
) -> Response {
    if shared.is_down() {
        shared.refused(Refusal::Down);
        return dialect.respond(ApiError::down());
    }
    next.run(request).await
}
