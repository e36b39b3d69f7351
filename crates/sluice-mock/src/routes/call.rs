//! What every model route shares: parse and validate a body ([`Call`]),
//! then answer it ([`ModelRoute::answer`]), the same way in real time
//! ([`serve`]: admission, latency, the tier's price) and as a line of a
//! provider batch ([`LineRoute::answer`]: no admission, no wait, the batch
//! price). So a batch line's answer is exactly the real-time answer to the
//! same body: the same text, ids and usage, prefix cache included (a line
//! reads and fills the cache as a real-time request does). A request that
//! asks to be streamed is served by [`stream`](super::stream) on the routes
//! that stream; a batch line cannot be streamed.

use axum::response::Response;
use serde::Serialize;

use super::stream::Streaming;
use super::{chat, completions, embeddings, messages, respond};
use crate::error::ApiError;
use crate::pricing::Tier;
use crate::state::{Shared, Work};

/// One request of a model route, parsed and validated.
pub(crate) struct Call<R> {
    pub(crate) model: String,
    /// The tier asked for (`service_tier`); standard on routes without
    /// flex. A batch line is answered on [`Tier::Batch`] whatever it says.
    pub(crate) tier: Tier,
    /// Prompt tokens plus the most completion tokens it may produce: what
    /// the rate limits and the batch quota count.
    pub(crate) estimated_tokens: u64,
    /// Whether the answer is streamed; `None` on the routes that never
    /// stream.
    pub(crate) stream: Option<Streaming>,
    pub(crate) request: R,
}

/// A model route: how it reads a body and answers it.
pub(crate) trait ModelRoute {
    /// The route's path, under which the stats count it.
    const PATH: &'static str;
    /// What parsing keeps for answering.
    type Request;
    type Answer: Serialize;

    /// Parses and validates `body`: the 400 a client would get, or the
    /// call.
    fn parse(shared: &Shared, body: &[u8]) -> Result<Call<Self::Request>, ApiError>;

    /// Looks the call's prefixes up in the cache (and stores them), and
    /// writes the answer: the work to bill and wait for, and the body.
    fn answer(shared: &Shared, body: &[u8], call: Call<Self::Request>) -> (Work, Self::Answer);
}

/// Serves `body` on route `R` in real time: parse, admission (flex, rate
/// limits, faults), the answer, then the bill and the wait.
pub(crate) async fn serve<R: ModelRoute>(
    shared: &Shared,
    body: &[u8],
) -> Result<Response, ApiError> {
    let call = R::parse(shared, body)?;
    serve_parsed::<R>(shared, body, call).await
}

/// [`serve`], for a call already parsed from `body`: admission, the
/// answer, the bill and the wait. The call is answered in one piece.
pub(crate) async fn serve_parsed<R: ModelRoute>(
    shared: &Shared,
    body: &[u8],
    call: Call<R::Request>,
) -> Result<Response, ApiError> {
    let admission = shared.admit(&call.model, call.estimated_tokens, call.tier)?;
    let model = call.model.clone();
    let (work, answer) = R::answer(shared, body, call);
    let receipt = shared.serve(R::PATH, &model, &admission, &work).await;
    Ok(respond(receipt, answer))
}

/// The route a batch's lines are answered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineRoute {
    Chat,
    Completions,
    Embeddings,
    Messages,
}

impl LineRoute {
    /// The route of an OpenAI batch `endpoint` (or line `url`), if the mock
    /// serves it.
    pub(crate) fn openai(endpoint: &str) -> Option<Self> {
        match endpoint {
            chat::PATH => Some(Self::Chat),
            completions::PATH => Some(Self::Completions),
            embeddings::PATH => Some(Self::Embeddings),
            _ => None,
        }
    }

    /// The endpoints an OpenAI batch may name.
    pub(crate) const OPENAI_ENDPOINTS: [&'static str; 3] =
        [chat::PATH, completions::PATH, embeddings::PATH];

    /// The model and token estimate of a line's `body`, or the 400 it
    /// would be answered (which the line then gets when it runs).
    pub(crate) fn estimate(self, shared: &Shared, body: &[u8]) -> Result<(String, u64), ApiError> {
        fn of<R: ModelRoute>(shared: &Shared, body: &[u8]) -> Result<(String, u64), ApiError> {
            parse_line::<R>(shared, body).map(|call| (call.model, call.estimated_tokens))
        }
        match self {
            Self::Chat => of::<chat::Chat>(shared, body),
            Self::Completions => of::<completions::Completions>(shared, body),
            Self::Embeddings => of::<embeddings::Embeddings>(shared, body),
            Self::Messages => of::<messages::Messages>(shared, body),
        }
    }

    /// Answers a line's `body` as the real-time route would, billed at the
    /// batch price: the answer's JSON, or the 400 the route gives.
    pub(crate) fn answer(
        self,
        shared: &Shared,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        match self {
            Self::Chat => answer_line::<chat::Chat>(shared, body),
            Self::Completions => answer_line::<completions::Completions>(shared, body),
            Self::Embeddings => answer_line::<embeddings::Embeddings>(shared, body),
            Self::Messages => answer_line::<messages::Messages>(shared, body),
        }
    }
}

fn answer_line<R: ModelRoute>(shared: &Shared, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut call = parse_line::<R>(shared, body)?;
    call.tier = Tier::Batch;
    let model = call.model.clone();
    let (work, answer) = R::answer(shared, body, call);
    shared.charge(&model, Tier::Batch, &work.usage());
    // An answer is plain data; serializing it cannot fail.
    Ok(serde_json::to_value(answer).unwrap_or_default())
}

/// Parses a batch line's `body`; a line that asks to be streamed is
/// refused, as a batch has no stream to send it on.
fn parse_line<R: ModelRoute>(shared: &Shared, body: &[u8]) -> Result<Call<R::Request>, ApiError> {
    let call = R::parse(shared, body)?;
    if call.stream.is_some() {
        return Err(ApiError::unsupported(
            "stream",
            "a batch line cannot be streamed; send stream: false",
        ));
    }
    Ok(call)
}
