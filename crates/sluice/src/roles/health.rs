//! What a role's `/healthz` and `/readyz` answer, from its first moment to
//! its last.
//!
//! - **Starting** (waiting for RabbitMQ, Redis or PostgreSQL, see
//!   [`super::wait`]): `/healthz` 200 (the process is alive and trying),
//!   `/readyz` 503, both saying what it waits for.
//! - **Running**: `/healthz` 200; `/readyz` runs the role's checks
//!   ([`Health::running`]) and answers 200 only when each passes.
//! - **Stopped** (its consumers ended: the drain after SIGTERM):
//!   `/healthz` and `/readyz` 503.
//!
//! The API's own `/healthz` and `/readyz` take over once it is up
//! ([`super::front`]); this answers for it only while it starts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use serde_json::json;

/// How long a readiness check waits for each dependency (as the API's).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A role's readiness checks: each dependency's name and whether it answers.
pub type Checks = Arc<dyn Fn() -> BoxFuture<'static, Vec<(&'static str, bool)>> + Send + Sync>;

enum Phase {
    Starting { waiting_for: Option<&'static str> },
    Running(Checks),
    Stopped,
}

/// The phase of one role, shared by its start-up and its health endpoints.
pub struct Health {
    phase: Mutex<Phase>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            phase: Mutex::new(Phase::Starting { waiting_for: None }),
        }
    }
}

impl Health {
    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Start-up now waits for `dependency` (`None`: for nothing in particular).
    pub fn waiting_for(&self, dependency: Option<&'static str>) {
        self.set(Phase::Starting {
            waiting_for: dependency,
        });
    }

    /// Up: readiness is now what `checks` say.
    pub fn running(&self, checks: Checks) {
        self.set(Phase::Running(checks));
    }

    /// The role's consumers ended (it is draining or done).
    pub fn stopped(&self) {
        self.set(Phase::Stopped);
    }

    fn starting_body(waiting_for: Option<&'static str>) -> serde_json::Value {
        json!({"status": "starting", "waiting_for": waiting_for})
    }

    /// `/healthz`.
    pub fn live(&self) -> Response {
        let phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match &*phase {
            Phase::Starting { waiting_for } => {
                (StatusCode::OK, Json(Self::starting_body(*waiting_for))).into_response()
            }
            Phase::Running(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
            Phase::Stopped => stopped(),
        }
    }

    /// `/readyz`.
    pub async fn ready(&self) -> Response {
        let checks = {
            let phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
            match &*phase {
                Phase::Starting { waiting_for } => {
                    let body = Self::starting_body(*waiting_for);
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                }
                Phase::Stopped => return stopped(),
                Phase::Running(checks) => Arc::clone(checks),
            }
        };
        let results = checks().await;
        let ok = results.iter().all(|(_, up)| *up);
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let checks: serde_json::Map<String, serde_json::Value> = results
            .into_iter()
            .map(|(name, up)| (name.to_owned(), up.into()))
            .collect();
        let body = json!({"status": if ok { "ready" } else { "not ready" }, "checks": checks});
        (status, Json(body)).into_response()
    }

    /// A router answering `/healthz` and `/readyz` from this.
    pub fn routes(self: &Arc<Self>) -> axum::Router {
        let (live, ready) = (Arc::clone(self), Arc::clone(self));
        axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(move || async move { live.live() }),
            )
            .route(
                "/readyz",
                axum::routing::get(move || async move { ready.ready().await }),
            )
    }
}

fn stopped() -> Response {
    let body = Json(json!({"status": "stopping"}));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Whether `check` passes within [`CHECK_TIMEOUT`].
pub async fn within_timeout(check: impl std::future::Future<Output = bool>) -> bool {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(health: &Arc<Health>, path: &str) -> (u16, serde_json::Value) {
        use tower::ServiceExt;
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = health.routes().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn alive_but_not_ready_while_starting_then_ready_as_its_checks_say_then_stopped() {
        let health = Arc::new(Health::default());
        health.waiting_for(Some("RabbitMQ"));
        let starting = json!({"status": "starting", "waiting_for": "RabbitMQ"});
        assert_eq!(answer(&health, "/healthz").await, (200, starting.clone()));
        assert_eq!(answer(&health, "/readyz").await, (503, starting));

        let broker_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let up = Arc::clone(&broker_up);
        health.running(Arc::new(move || {
            let broker = up.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { vec![("rabbitmq", broker), ("redis", true)] })
        }));
        let ready = json!({"status": "ready", "checks": {"rabbitmq": true, "redis": true}});
        assert_eq!(answer(&health, "/readyz").await, (200, ready));
        broker_up.store(false, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = answer(&health, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(body["checks"]["rabbitmq"], false);
        // Alive all the same: a broker outage is no reason to restart.
        assert_eq!(answer(&health, "/healthz").await.0, 200);

        health.stopped();
        assert_eq!(answer(&health, "/healthz").await.0, 503);
        assert_eq!(answer(&health, "/readyz").await.0, 503);
    }
}
