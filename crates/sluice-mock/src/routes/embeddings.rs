//! `POST /v1/embeddings`.
//!
//! `input` is one string or an array; each gets a deterministic unit
//! vector (see [`embedding`](crate::text::embedding)). Embeddings only
//! prefill, so they cost no decode time. They are billed at the model's
//! input price and never cached. `service_tier` may ask for flex (see
//! [`flex`](crate::flex)).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::call::{Call, ModelRoute};
use super::{parse_body, require_model, resolve_dims, TextInput};
use crate::error::ApiError;
use crate::flex::{echoed, requested_tier};
use crate::latency::Sequence;
use crate::state::{Shared, Work};
use crate::text::{count_tokens, embedding, semantic_embedding, SEMANTIC_DIMS};

pub(crate) const PATH: &str = "/v1/embeddings";

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Option<TextInput>,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
    service_tier: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    /// Little-endian `f32`s, base64-encoded; the OpenAI Python SDK's default.
    Base64,
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: EmbeddingUsage,
    service_tier: &'static str,
}

#[derive(Debug, Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: u64,
    embedding: Vector,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub(super) async fn handle(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    super::call::serve::<Embeddings>(&shared, &body).await
}

/// The embeddings route, for [`ModelRoute`].
pub(crate) struct Embeddings;

/// An embeddings request, validated.
pub(crate) struct Parsed {
    inputs: Vec<String>,
    semantic: bool,
    dims: usize,
    encoding: Encoding,
    prompt_tokens: u64,
}

impl ModelRoute for Embeddings {
    const PATH: &'static str = PATH;
    type Request = Parsed;
    type Answer = EmbeddingResponse;

    fn parse(shared: &Shared, body: &[u8]) -> Result<Call<Parsed>, ApiError> {
        let request: EmbeddingRequest = parse_body(body)?;
        let model = require_model(request.model)?;
        let inputs = TextInput::require(request.input, "input", "you must provide an input")?;
        // A model named `…semantic…` embeds by meaning (close for paraphrases).
        let semantic = model.contains("semantic");
        let default_dims = if semantic {
            SEMANTIC_DIMS
        } else {
            shared.options().embedding_dims.get()
        };
        let dims = resolve_dims(request.dimensions, default_dims)?;
        let encoding = match request.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding_format",
                    format!("encoding_format is {other:?}; it must be \"float\" or \"base64\""),
                ))
            }
        };
        let tier = requested_tier(request.service_tier.as_deref())?;
        let prompt_tokens = inputs.iter().map(|text| count_tokens(text)).sum::<u64>();
        Ok(Call {
            model,
            tier,
            estimated_tokens: prompt_tokens,
            stream: None,
            request: Parsed {
                inputs,
                semantic,
                dims,
                encoding,
                prompt_tokens,
            },
        })
    }

    fn answer(_shared: &Shared, _body: &[u8], call: Call<Parsed>) -> (Work, EmbeddingResponse) {
        let Call {
            model,
            tier,
            request: p,
            ..
        } = call;
        let work = Work {
            prompts: p.inputs.len() as u64,
            sequences: p
                .inputs
                .iter()
                .map(|text| Sequence {
                    prompt_tokens: count_tokens(text),
                    cached_tokens: 0,
                    decode_tokens: 0,
                })
                .collect(),
            completion_tokens: 0,
            cache_write_tokens: 0,
        };
        let data = (0u64..)
            .zip(&p.inputs)
            .map(|(index, text)| EmbeddingData {
                object: "embedding",
                index,
                embedding: encode(
                    if p.semantic {
                        semantic_embedding(text, p.dims)
                    } else {
                        embedding(text, p.dims)
                    },
                    p.encoding,
                ),
            })
            .collect();
        let response = EmbeddingResponse {
            object: "list",
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens: p.prompt_tokens,
                total_tokens: p.prompt_tokens,
            },
            service_tier: echoed(tier),
        };
        (work, response)
    }
}

fn encode(vector: Vec<f32>, encoding: Encoding) -> Vector {
    match encoding {
        Encoding::Float => Vector::Float(vector),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Vector::Base64(BASE64.encode(&bytes))
        }
    }
}
