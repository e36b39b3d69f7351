//! The API's listener, from the process's first moment: bound before the
//! API waits for its services, so that `/healthz` answers 200 and
//! `/readyz` 503 meanwhile ([`super::health`]), `/metrics` is scraped as
//! usual, and any other request gets a problem+json 503 saying it starts. Once the API is up, every
//! request goes to its router, `/healthz` and `/readyz` included.

use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use sluice_core::metrics::Metrics;
use tower::ServiceExt;

use super::health::Health;

/// Seconds a client is asked to wait before trying again during start-up.
const RETRY_AFTER_S: &str = "5";

pub struct Front {
    pub health: Arc<Health>,
    /// The API's metrics (the same before and after it is up).
    metrics: Arc<Metrics>,
    api: OnceLock<Router>,
}

impl Front {
    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            health,
            metrics,
            api: OnceLock::new(),
        })
    }

    /// Hands every request from now on to `api`.
    pub fn open(&self, api: Router) {
        let _ = self.api.set(api);
    }

    /// The router to serve on the listener.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(self))
    }
}

async fn dispatch(State(front): State<Arc<Front>>, request: Request) -> Response {
    if let Some(api) = front.api.get() {
        return match api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    match request.uri().path() {
        "/healthz" => front.health.live(),
        "/readyz" => front.health.ready().await,
        "/metrics" => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            front.metrics.render(),
        )
            .into_response(),
        _ => starting(),
    }
}

fn starting() -> Response {
    let body = json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the API is starting: it waits for its services (see /readyz)",
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::RETRY_AFTER, RETRY_AFTER_S),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(front: &Arc<Front>, path: &str) -> u16 {
        let request = Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = front.router().oneshot(request).await.unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn answers_health_while_starting_then_hands_everything_to_the_api() {
        let front = Front::new(Arc::new(Health::default()), Arc::new(Metrics::new()));
        front.health.waiting_for(Some("Redis"));
        assert_eq!(status(&front, "/healthz").await, 200);
        assert_eq!(status(&front, "/metrics").await, 200);
        assert_eq!(status(&front, "/readyz").await, 503);
        assert_eq!(status(&front, "/v1/jobs/x").await, 503);

        let api = Router::new()
            .route("/readyz", axum::routing::get(|| async { "ready" }))
            .route("/v1/jobs/x", axum::routing::get(|| async { "job" }));
        front.open(api);
        assert_eq!(status(&front, "/readyz").await, 200);
        assert_eq!(status(&front, "/v1/jobs/x").await, 200);
    }
}
