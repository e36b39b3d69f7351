//! Provider errors carry their retry decision; nothing parses strings to
//! decide whether to retry. [`SetupError`] is why providers and routes
//! could not be built from the config (a role refuses to start).

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Retrying cannot help (a 4xx other than 408, 409, 429; an answer that
    /// cannot be matched to its job). The job fails with this message.
    #[error("{provider}: {message}")]
    Terminal {
        provider: String,
        message: String,
        /// The provider's refusal, when it answered with a 4xx.
        rejection: Option<sluice_core::Rejection>,
    },
    /// The provider asked to wait this long before trying again (429/503
    /// with `Retry-After`).
    #[error("{provider}: {message} (retry after {after:?})")]
    RetryAfter {
        provider: String,
        after: Duration,
        message: String,
    },
    /// Worth another try after a backoff (a connection refused, 5xx): the
    /// provider did not take the request, and bills nothing for it.
    #[error("{provider}: {message}")]
    Transient { provider: String, message: String },
    /// Worth another try, but the request reached the provider and its
    /// answer did not reach us: the client's timeout ran out, or the
    /// connection or stream broke after the request left. The provider may
    /// well have billed it (see `sluice_core::repeat`).
    #[error("{provider}: {message}")]
    Abandoned { provider: String, message: String },
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Terminal { .. })
    }

    /// Whether the call was abandoned after its request reached the
    /// provider, which may have billed it.
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Self::Abandoned { .. })
    }

    /// The shortest wait the provider asked for, if it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryAfter { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// A stable kind for the job's error record.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Terminal { .. } => "provider_rejected",
            Self::RetryAfter { .. } | Self::Transient { .. } | Self::Abandoned { .. } => {
                "provider_unavailable"
            }
        }
    }

    /// The error a job that ended on this error carries: with the
    /// provider's own refusal, when it refused the request.
    pub fn job_error(&self) -> sluice_core::JobError {
        match self {
            Self::Terminal {
                rejection: Some(rejection),
                ..
            } => sluice_core::JobError::rejected(self.kind(), self.to_string(), rejection.clone()),
            _ => sluice_core::JobError::new(self.kind(), self.to_string()),
        }
    }
}

/// Why a provider or a route could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("provider {provider:?}: environment variable {var} (api_key_env) is not set")]
    MissingApiKey { provider: String, var: String },
    #[error("provider {provider:?}: header {name:?}: {reason}")]
    BadHeader {
        provider: String,
        name: String,
        reason: String,
    },
    #[error("provider {provider:?}: cannot build its HTTP client: {source}")]
    Client {
        provider: String,
        source: reqwest::Error,
    },
    #[error("model {model:?}: unknown provider {provider:?}")]
    UnknownProvider { model: String, provider: String },
}
