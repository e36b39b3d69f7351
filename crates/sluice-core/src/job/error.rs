//! Why a job failed, and a provider's own refusal of a request.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a job failed (or expired, or was never enqueued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// A stable, machine-readable kind, such as `provider_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened, for a human.
    pub message: String,
    /// The provider's own refusal, when it refused the request (a 4xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
}

/// A provider's refusal of a request (a 4xx other than 408, 409 and 429),
/// as the provider said it: what an OpenAI-compatible caller gets back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// The provider's HTTP status.
    pub status: u16,
    /// The provider's error in OpenAI's shape: `message`, `type`, `param`
    /// and `code` (null where the provider gave none).
    #[schema(value_type = Object)]
    pub error: serde_json::Value,
}

impl Rejection {
    /// The refusal a provider answered with `status` and `body`: its
    /// `error` object (OpenAI's, or Anthropic's `{"type": "error", "error":
    /// {"type", "message"}}`), else the body as the message.
    pub fn from_body(status: u16, body: &str) -> Self {
        let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
        let theirs = parsed.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            theirs
                .and_then(|e| e.get(name))
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        let message = match field("message") {
            serde_json::Value::Null => {
                serde_json::Value::String(body.chars().take(2_000).collect())
            }
            message => message,
        };
        let kind = match field("type") {
            serde_json::Value::Null => serde_json::Value::String("invalid_request_error".into()),
            kind => kind,
        };
        Self {
            status,
            error: serde_json::json!({
                "message": message,
                "type": kind,
                "param": field("param"),
                "code": field("code"),
            }),
        }
    }
}

impl JobError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            rejection: None,
        }
    }

    /// The error of a job whose provider refused it.
    pub fn rejected(
        kind: impl Into<String>,
        message: impl Into<String>,
        rejection: Rejection,
    ) -> Self {
        Self {
            rejection: Some(rejection),
            ..Self::new(kind, message)
        }
    }

    /// The error of a job that expired in the queue.
    pub fn deadline_passed() -> Self {
        Self::new(
            "deadline_exceeded",
            "the job was still queued when its deadline passed; it never reached a provider",
        )
    }
}
