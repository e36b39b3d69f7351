//! Streamed answers (`"stream": true`), paced alike on every route that
//! streams ([`Paced`]: each route's wire format; Anthropic's is in
//! [`messages_stream`](super::messages_stream)). On `/v1/chat/completions`
//! and `/v1/completions`, in OpenAI's wire format: a `200` with
//! `content-type: text/event-stream` whose body is events
//! `data: {chunk}\n\n`, ending with `data: [DONE]\n\n`.
//!
//! A streamed request is the non-streamed one sent in pieces: it is parsed,
//! admitted (401, 400, 429 and injected 5xx come before the stream starts,
//! as JSON errors), answered, counted and billed exactly as the same body
//! without `stream` would be, and its response carries the same headers.
//! Every chunk repeats the answer's `id`, `created`, `model` and
//! `service_tier`. The ids (the answer's, a tool call's) are drawn from the
//! body without `stream` and `stream_options`, written as serde_json
//! writes it, so they are those of the same request not streamed (when
//! that one is written so too, as serde_json clients write it). Each
//! choice's text is cut into tokens
//! ([`token_pieces`]), so concatenating a choice's pieces gives exactly its
//! non-streamed content (chat), arguments (a forced tool call) or text
//! (completions). How each route's choice opens, carries a piece and
//! closes is its [`StreamedChoice`] implementation.
//!
//! The chunks go out in steps, one token of every choice a step (choices
//! decode in parallel, interleaved in index order): an answer whose longest
//! choice has `S` tokens takes `S` steps. The first step (chat's role
//! opening, then the first pieces) comes once the slot (with
//! `max_concurrency`) is taken and the first-token part of the latency has
//! passed; step `k` comes `decode × k / S` later; the closing chunks (empty
//! delta or text, with the `finish_reason`), the usage chunk and `[DONE]`
//! come at `decode`, so the whole stream takes what the non-streamed answer
//! waits (see [`LatencyParts`]). The bill is charged when the stream
//! starts, so a client hanging up midway still pays, as with a provider.
//!
//! With `stream_options.include_usage`, every chunk has `"usage": null`
//! and one more chunk before `[DONE]` has `"choices": []` and the answer's
//! `usage`; without it, no chunk has a `usage` field. `stream_options`
//! without `stream: true` is a 400, as OpenAI answers it.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::call::{self, ModelRoute};
use super::{Completion, Usage};
use crate::error::ApiError;
use crate::latency::LatencyParts;
use crate::state::Shared;
use crate::text::{first_token, token_pieces};

/// The event that ends every stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// How a request asked to be streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streaming {
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub(crate) include_usage: bool,
}

/// `stream_options` in a request body.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    include_usage: Option<bool>,
}

/// Whether a request with these `stream` and `stream_options` is
/// streamed; a 400 for `stream_options` without `stream: true`.
pub(crate) fn requested(
    stream: Option<bool>,
    options: Option<StreamOptions>,
) -> Result<Option<Streaming>, ApiError> {
    match (stream, options) {
        (Some(true), options) => Ok(Some(Streaming {
            include_usage: options.and_then(|o| o.include_usage).unwrap_or(false),
        })),
        (_, Some(_)) => Err(ApiError::invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )),
        (_, None) => Ok(None),
    }
}

/// A choice of an answer, as a stream sends it.
pub(crate) trait StreamedChoice {
    /// The `object` of the chunks that carry it.
    const CHUNK_OBJECT: &'static str;

    /// How it is sent.
    fn script(self) -> Script;
}

/// How one choice is streamed: each field is what the chunk's single
/// `choices` entry holds.
pub(crate) struct Script {
    pub(crate) index: u64,
    /// Sent just before the first piece (chat's role), if anything is.
    pub(crate) opening: Option<Value>,
    /// The text sent in pieces, one token each.
    pub(crate) text: String,
    /// The entry that carries `piece` of the text of choice `index`.
    pub(crate) piece: fn(u64, &str) -> Value,
    /// Sent last, with the finish reason.
    pub(crate) closing: Value,
}

/// Serves `body` on route `R`, streamed when it asks to be (see the
/// [module documentation](self)), else as [`call::serve`] does.
pub(crate) async fn serve<R, C>(shared: &Shared, body: &[u8]) -> Result<Response, ApiError>
where
    R: ModelRoute<Answer = Completion<C>>,
    C: StreamedChoice,
{
    serve_paced::<R, _>(shared, body, Events::new).await
}

/// Serves `body` on route `R`: when it asks to be streamed, as the events
/// `events` makes of the answer, paced as the [module documentation](self)
/// says; else as [`call::serve`] does. Each route's wire format is its own
/// [`Paced`]; admission, bill and pacing are the same for all.
pub(crate) async fn serve_paced<R, E>(
    shared: &Shared,
    body: &[u8],
    events: impl FnOnce(R::Answer, Streaming) -> E,
) -> Result<Response, ApiError>
where
    R: ModelRoute,
    E: Paced,
{
    let call = R::parse(shared, body)?;
    let Some(streaming) = call.stream else {
        return call::serve_parsed::<R>(shared, body, call).await;
    };
    let admission = shared.admit(&call.model, call.estimated_tokens, call.tier)?;
    let model = call.model.clone();
    let (work, answer) = R::answer(shared, &unstreamed(body), call);
    let receipt = shared.account(R::PATH, &model, &admission, &work);
    let latency = shared.latency_of(&admission, &work);
    let run = Run {
        events: events(answer, streaming),
        shared: shared.clone(),
        latency,
        slot: None,
        decode_from: Instant::now(),
        phase: Phase::Queued,
    };
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Ok((
        receipt.headers,
        headers,
        Body::from_stream(run.into_stream()),
    )
        .into_response())
}

/// An answer's events as a stream sends them: opened, then one step per
/// token (see the [module documentation](self)), then closed.
pub(crate) trait Paced: Send + 'static {
    /// Steps before the closing events: at least one, so that the
    /// openings are sent.
    fn steps(&self) -> u64;

    /// The events of step `step`, in `0..steps`.
    fn step(&mut self, step: u64) -> Bytes;

    /// The closing events.
    fn end(&self) -> Bytes;
}

/// `body` without `stream` and `stream_options`, as serde_json writes it:
/// what a streamed answer's ids are drawn from.
fn unstreamed(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut fields)) => {
            // `retain` keeps the order of the others, whether serde_json
            // sorts keys or keeps them as written.
            fields.retain(|key, _| key != "stream" && key != "stream_options");
            // A map of JSON values; serializing it cannot fail.
            serde_json::to_vec(&fields).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// One chunk, as OpenAI sends it.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    choices: &'a [Value],
    /// Absent without `include_usage`; null on every chunk but the last
    /// with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

/// A choice being streamed: its script, and how much of its text is sent.
struct Sending {
    script: Script,
    sent: usize,
}

/// The chunks of one answer, step by step.
struct Events {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    service_tier: &'static str,
    choices: Vec<Sending>,
    usage: Usage,
    include_usage: bool,
    /// Steps before the closing chunks: the longest choice's token count,
    /// at least one (so that the openings are sent).
    steps: u64,
}

impl Events {
    fn new<C: StreamedChoice>(answer: Completion<C>, streaming: Streaming) -> Self {
        let choices: Vec<Sending> = answer
            .choices
            .into_iter()
            .map(|choice| Sending {
                script: choice.script(),
                sent: 0,
            })
            .collect();
        let steps = choices
            .iter()
            .map(|c| token_pieces(&c.script.text).count() as u64)
            .max()
            .unwrap_or(0)
            .max(1);
        Self {
            id: answer.id,
            object: C::CHUNK_OBJECT,
            created: answer.created,
            model: answer.model,
            service_tier: answer.service_tier,
            choices,
            usage: answer.usage,
            include_usage: streaming.include_usage,
            steps,
        }
    }

    /// Appends the event of a chunk with `choices` (and `usage` on the
    /// last chunk) to `out`.
    fn push(&self, out: &mut Vec<u8>, choices: &[Value], usage: Option<&Usage>) {
        let chunk = Chunk {
            id: &self.id,
            object: self.object,
            created: self.created,
            model: &self.model,
            service_tier: self.service_tier,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        // A chunk is plain data; serializing it cannot fail.
        let json = serde_json::to_string(&chunk).unwrap_or_default();
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(json.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

impl Paced for Events {
    fn steps(&self) -> u64 {
        self.steps
    }

    /// On the first step, each choice's opening; then each choice's next
    /// piece, if it has one left.
    fn step(&mut self, step: u64) -> Bytes {
        let mut out = Vec::new();
        let mut entries = Vec::with_capacity(self.choices.len() * 2);
        for sending in &mut self.choices {
            let script = &sending.script;
            if step == 0 {
                entries.extend(script.opening.clone());
            }
            let rest = script.text.get(sending.sent..).unwrap_or_default();
            let piece = first_token(rest);
            if !piece.is_empty() {
                entries.push((script.piece)(script.index, piece));
                sending.sent += piece.len();
            }
        }
        for entry in &entries {
            self.push(&mut out, std::slice::from_ref(entry), None);
        }
        out.into()
    }

    /// Each choice's last chunk, the usage chunk when asked for, and
    /// `[DONE]`.
    fn end(&self) -> Bytes {
        let mut out = Vec::new();
        for sending in &self.choices {
            self.push(
                &mut out,
                std::slice::from_ref(&sending.script.closing),
                None,
            );
        }
        if self.include_usage {
            self.push(&mut out, &[], Some(&self.usage));
        }
        out.extend_from_slice(DONE);
        out.into()
    }
}

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started: the slot and the first-token wait are ahead.
    Queued,
    /// Step `k` is next (the closing events once `k` reaches the steps).
    At(u64),
    Done,
}

/// A stream being sent: its events, and when each step is due.
struct Run<E> {
    events: E,
    shared: Shared,
    latency: LatencyParts,
    /// The slot held while streaming, with `max_concurrency`.
    slot: Option<OwnedSemaphorePermit>,
    /// When the first step went out; later steps are timed from it.
    decode_from: Instant,
    phase: Phase,
}

impl<E: Paced> Run<E> {
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        futures::stream::unfold(self, |mut run| async move {
            let bytes = run.next().await?;
            Some((Ok(bytes), run))
        })
    }

    /// The next events, once they are due; `None` after `[DONE]`.
    async fn next(&mut self) -> Option<Bytes> {
        let step = match self.phase {
            Phase::Done => return None,
            Phase::Queued => {
                self.slot = self.shared.slot().await;
                sleep(self.latency.first_token).await;
                self.decode_from = Instant::now();
                0
            }
            Phase::At(step) => step,
        };
        let steps = self.events.steps().max(1);
        let due = share(self.latency.decode, step, steps);
        if !due.is_zero() {
            tokio::time::sleep_until(self.decode_from + due).await;
        }
        if step < steps {
            self.phase = Phase::At(step + 1);
            Some(self.events.step(step))
        } else {
            self.phase = Phase::Done;
            self.slot = None;
            Some(self.events.end())
        }
    }
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// `total × k / of`, rounded down; `total` when `of` is zero.
fn share(total: Duration, k: u64, of: u64) -> Duration {
    let Some(nanos) = total
        .as_nanos()
        .saturating_mul(u128::from(k))
        .checked_div(u128::from(of))
    else {
        return total;
    };
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_share_decode_evenly_up_to_the_whole() {
        let decode = Duration::from_millis(300);
        let times: Vec<Duration> = (0..=3).map(|k| share(decode, k, 3)).collect();
        assert_eq!(
            times,
            [0, 100, 200, 300].map(Duration::from_millis).to_vec()
        );
        assert_eq!(share(decode, 0, 0), decode);
        assert_eq!(
            share(Duration::MAX, u64::MAX, 1),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn ids_come_from_the_body_without_its_stream_fields() {
        let plain = serde_json::json!({"model": "m", "prompt": "x", "n": 2});
        let mut streamed = plain.clone();
        streamed["stream"] = true.into();
        streamed["stream_options"] = serde_json::json!({"include_usage": true});
        let streamed = streamed.to_string();
        assert_eq!(
            unstreamed(streamed.as_bytes()),
            plain.to_string().into_bytes()
        );
        assert_eq!(unstreamed(b"[1]"), b"[1]");
    }

    #[test]
    fn stream_options_need_stream() {
        let usage = || {
            Some(StreamOptions {
                include_usage: Some(true),
            })
        };
        assert_eq!(requested(None, None), Ok(None));
        assert_eq!(requested(Some(false), None), Ok(None));
        assert_eq!(
            requested(Some(true), None),
            Ok(Some(Streaming {
                include_usage: false
            }))
        );
        assert_eq!(
            requested(Some(true), usage()),
            Ok(Some(Streaming {
                include_usage: true
            }))
        );
        assert!(requested(Some(false), usage()).is_err());
        assert!(requested(None, usage()).is_err());
    }
}
