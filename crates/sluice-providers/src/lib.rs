//! Provider calls.
//!
//! - [`Provider`]: one batch in, one answer (or error) per job out, in order.
//! - [`openai`]: the OpenAI-compatible adapter (OpenAI, vLLM, the mock).
//!   Completions and embeddings batches go out as ONE call with an array;
//!   chat batches as a bounded concurrent fan-out.
//! - [`router`]: a model's ordered providers, with retries (exponential
//!   backoff, full jitter, `Retry-After`) and fallback.
//!
//! Invariant: each answer is matched to its job by the index the provider
//! returned; a response that cannot be matched is an error, never a guess.

pub mod adapter;
pub mod anthropic;
pub mod anthropic_stream;
pub mod batch;
pub mod breaker;
pub mod costs;
pub mod decode;
pub mod error;
pub mod http;
pub mod limit;
pub mod openai;
pub mod router;
pub mod tokens;

use async_trait::async_trait;
use sluice_core::tier::FlexConfig;
use sluice_core::{Endpoint, JobId, Tier, Usage};

pub use error::{ProviderError, SetupError};
pub use router::{RetryPolicy, Router};

/// Jobs that go to a provider together.
#[derive(Clone, Debug)]
pub struct Batch {
    pub endpoint: Endpoint,
    /// The hash of the prompt prefix the batch's jobs share (their batch
    /// key's): the provider's prompt-cache key.
    pub prefix_hash: String,
    /// The model name the provider knows.
    pub upstream_model: String,
    pub jobs: Vec<BatchJob>,
    /// `Some(timeout)`: go out on the provider's flex tier, and give up
    /// after `timeout` (the router then calls again in real time); `None`:
    /// a standard call.
    pub flex: Option<std::time::Duration>,
}

impl Batch {
    /// The tier this call goes out on.
    pub fn tier(&self) -> Tier {
        if self.flex.is_some() {
            Tier::Flex
        } else {
            Tier::Realtime
        }
    }
}

#[derive(Clone, Debug)]
pub struct BatchJob {
    pub id: JobId,
    /// The caller's OpenAI-shaped body.
    pub body: serde_json::Value,
    /// The W3C `traceparent` to send on the provider call that serves this
    /// job (an array call sends its first job's).
    pub traceparent: Option<String>,
    /// When the job must be answered by, if it says.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the call streams, its chunks relayed as they come
    /// ([`ChunkRelay`]). Adapters that cannot stream answer in one piece.
    pub stream: bool,
}

/// One job's answer: the response body as the caller sees it (OpenAI-shaped,
/// for this job alone) and the usage attributed to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub body: serde_json::Value,
    pub usage: Usage,
    /// What this job's share of the call cost, in µ$, when the price table
    /// prices the provider's model.
    pub cost_micros: Option<u64>,
    /// The tier of the call that answered.
    pub tier: Tier,
}

/// Told of each provider call just before it leaves (its budget and a
/// connection slot taken), with the jobs it serves: the worker marks their
/// attempts sent, so that a call its worker did not live to see answered
/// is known to have been made (see `sluice_core::repeat`). It answers
/// once the mark is stored; a mark that cannot be stored is logged, and the
/// call still goes.
#[async_trait]
pub trait SendLog: Send + Sync {
    async fn sending(&self, jobs: &[JobId]);
}

/// Takes a streaming call's entries as they arrive: the worker appends
/// them to the job's chunk log, where its caller reads them
/// (`sluice_core::stream`). It answers once they are stored, so a job's
/// entries stay in order; an entry that cannot be stored is logged, and the
/// call goes on (its caller still gets the whole answer at the end).
#[async_trait]
pub trait ChunkRelay: Send + Sync {
    async fn relay(&self, job: JobId, entries: Vec<sluice_core::stream::StreamEntry>);
}

/// What the worker hears of the calls the providers make.
#[derive(Clone, Default)]
pub struct CallHooks {
    /// Told of each call just before it leaves.
    pub sent: Option<std::sync::Arc<dyn SendLog>>,
    /// Takes a streaming call's chunks; without one, no call streams.
    pub relay: Option<std::sync::Arc<dyn ChunkRelay>>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;

    /// The provider's flex tier, if it sells one and the config uses it.
    fn flex(&self) -> Option<&FlexConfig> {
        None
    }

    /// Sends `batch`; the result at index i is job i's.
    async fn call(&self, batch: &Batch) -> Vec<Result<Answer, ProviderError>>;
}
