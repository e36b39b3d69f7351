//! The semantic cache at the API: embed the prompt with the configured
//! embedding model, shortlist neighbours by their locality-sensitive
//! buckets (in Redis, so every replica sees every entry), and shortlist
//! the most similar ones at or above the threshold for the verifier
//! (`cache::verify`), which may ask the judge model.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_core::cache::judge;
use sluice_core::cache::lsh::{self, cosine, Lsh};
use sluice_core::cache::SemanticConfig;
use sluice_core::{Endpoint, JobId, Usage};
use sluice_providers::{BatchJob, Router};
use sluice_store::cache::Candidate;

use super::lexicon::Lexicon;

/// Neighbours the verifier tries per lookup: the best one refused, a
/// next one may still be the same question (a paraphrase cached twice),
/// but each try may cost an embedding call, so few.
pub const VERIFIED_PER_LOOKUP: usize = 3;

/// Word vectors kept per process for the verifier: the words that differ
/// between questions come from a small vocabulary, so most lookups find
/// them all here and make no second embedding call. 384 floats a word:
/// about 80 MB at most.
const WORDS_KEPT: u64 = 50_000;

pub struct SemanticIndex {
    router: Arc<Router>,
    /// Settles the differing words it relates without a vector.
    lexicon: Option<Arc<Lexicon>>,
    /// The verifier's word vectors, by word (the model is fixed per index).
    words: moka::future::Cache<String, Arc<Vec<f32>>>,
    model: String,
    config: SemanticConfig,
    /// The hyperplanes, centred on the model's reference vectors (built
    /// on the first lookup, which embeds the reference texts).
    lsh: tokio::sync::OnceCell<Arc<Lsh>>,
}

/// A prompt's vector and its bucket in each band.
pub struct Embedded {
    pub vector: Vec<f32>,
    pub buckets: Vec<String>,
}

/// Why a call of the semantic cache's (an embedding, a judgement) gave
/// nothing to go on (the lookup is then a miss).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the call failed: {0}")]
    Provider(#[from] sluice_providers::ProviderError),
    #[error("the call answered nothing")]
    NoAnswer,
    #[error("the embedding answer has no vector")]
    NoVector,
    #[error("no judge model is configured")]
    NoJudge,
    #[error("the embedding has {got} dimensions, the model's reference vectors {expected}")]
    Dims { got: usize, expected: usize },
}

/// What one call of the semantic cache's cost, for the ledger.
pub struct CacheCall {
    pub id: JobId,
    pub model: String,
    pub provider: String,
    pub endpoint: Endpoint,
    pub usage: Usage,
    pub cost_micros: u64,
}

impl SemanticIndex {
    /// The index, when the config names an embedding model; `lexicon` is
    /// the one `config.lexicon` names, loaded.
    pub fn new(
        router: Arc<Router>,
        config: &SemanticConfig,
        lexicon: Option<Arc<Lexicon>>,
    ) -> Option<Self> {
        Some(Self {
            router,
            lexicon,
            words: moka::future::Cache::new(WORDS_KEPT),
            model: config.model.clone()?,
            config: config.clone(),
            lsh: tokio::sync::OnceCell::new(),
        })
    }

    pub fn max_candidates(&self) -> usize {
        self.config.max_candidates
    }

    pub fn lexicon(&self) -> Option<&Lexicon> {
        self.lexicon.as_deref()
    }

    /// Whether the word check embeds the differing words the lexicon does
    /// not settle (else they refuse).
    pub fn word_vectors(&self) -> bool {
        self.config.word_vectors
    }

    /// The share of the judge's hits measured wrong, when one is configured.
    pub fn judge_error(&self) -> Option<f64> {
        self.config
            .judge_model
            .as_ref()
            .and(self.config.judge_error)
    }

    /// Embeds `text`: what the calls made cost (the question's, and on a
    /// process's first lookup the reference texts'), even when one
    /// failed, and its vector and buckets.
    pub async fn embed(&self, text: &str) -> (Vec<CacheCall>, Result<Embedded, CallError>) {
        let mut calls = Vec::new();
        let embedded = self.embed_into(text, &mut calls).await;
        (calls, embedded)
    }

    async fn embed_into(
        &self,
        text: &str,
        calls: &mut Vec<CacheCall>,
    ) -> Result<Embedded, CallError> {
        let lsh = self.lsh(calls).await?;
        let (mut vectors, call) = self.embed_all(&[text.to_owned()]).await?;
        calls.push(call);
        let vector = vectors.pop().ok_or(CallError::NoVector)?;
        if vector.len() != lsh.dims() {
            return Err(CallError::Dims {
                got: vector.len(),
                expected: lsh.dims(),
            });
        }
        let buckets = lsh.buckets(&vector);
        Ok(Embedded { vector, buckets })
    }

    /// The hyperplanes, centred on the mean of the model's vectors for the
    /// reference texts; the first call embeds them (its cost is added to
    /// `calls`), and a failed one is tried again on the next lookup.
    async fn lsh(&self, calls: &mut Vec<CacheCall>) -> Result<Arc<Lsh>, CallError> {
        let c = &self.config;
        self.lsh
            .get_or_try_init(|| async {
                let (reference, call) = self.embed_all(&lsh::reference_texts()).await?;
                calls.push(call);
                let dims = reference.first().map_or(0, Vec::len);
                let planes = Lsh::new(c.seed, c.bands, c.bits_per_band, dims).centred(&reference);
                Ok(Arc::new(planes))
            })
            .await
            .cloned()
    }

    /// Embeds every text of `texts` in one call: their vectors in order,
    /// and what the call cost.
    pub async fn embed_all(
        &self,
        texts: &[String],
    ) -> Result<(Vec<Vec<f32>>, CacheCall), CallError> {
        let body = json!({"model": self.model, "input": texts});
        let (answer, call) = self.call(&self.model, Endpoint::Embeddings, body).await?;
        let vectors: Vec<Vec<f32>> = (0..texts.len())
            .map(|i| {
                answer
                    .pointer(&format!("/data/{i}/embedding"))
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_f64)
                            .map(|x| x as f32)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if vectors.iter().any(Vec::is_empty) {
            return Err(CallError::NoVector);
        }
        Ok((vectors, call))
    }

    /// Asks the judge model whether `new` asks what `cached` asked: its
    /// verdict, and what the call cost.
    pub async fn judge(&self, cached: &str, new: &str) -> Result<(bool, CacheCall), CallError> {
        let model = self
            .config
            .judge_model
            .as_deref()
            .ok_or(CallError::NoJudge)?;
        let body = judge::request(model, cached, new);
        let (answer, call) = self.call(model, Endpoint::ChatCompletions, body).await?;
        Ok((judge::says_same(&answer), call))
    }

    /// One call to `model` through the routes (on the providers'
    /// fleet-wide budgets): its answer's body and what it cost.
    async fn call(
        &self,
        model: &str,
        endpoint: Endpoint,
        body: Value,
    ) -> Result<(Value, CacheCall), CallError> {
        let id = JobId::new();
        let mut results = self
            .router
            .call(
                model,
                endpoint,
                "semantic-cache",
                vec![BatchJob {
                    id,
                    body,
                    // The call is part of the request's trace.
                    traceparent: crate::trace::current().map(|tp| tp.child().to_string()),
                    // The caller waits for the lookup: it cannot wait for flex.
                    deadline: None,
                    stream: false,
                }],
            )
            .await;
        let (answer, provider) = match results.pop() {
            Some(Ok(answered)) => answered,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(CallError::NoAnswer),
        };
        let call = CacheCall {
            id,
            model: model.to_owned(),
            provider,
            endpoint,
            usage: answer.usage,
            cost_micros: answer.cost_micros.unwrap_or(0),
        };
        Ok((answer.body, call))
    }

    /// The vectors of `words`, in order: those kept from earlier lookups,
    /// the others embedded in one call (then kept), and that call's cost
    /// if it was made.
    pub async fn embed_words(
        &self,
        words: &[String],
    ) -> Result<(Vec<Vec<f32>>, Option<CacheCall>), CallError> {
        let mut found = Vec::with_capacity(words.len());
        let mut missing = Vec::new();
        for w in words {
            let kept = self.words.get(w).await;
            if kept.is_none() {
                missing.push(w.clone());
            }
            found.push(kept);
        }
        let mut call = None;
        let mut fresh = HashMap::new();
        if !missing.is_empty() {
            let (vectors, made) = self.embed_all(&missing).await?;
            for (w, v) in missing.into_iter().zip(vectors) {
                let v = Arc::new(v);
                self.words.insert(w.clone(), Arc::clone(&v)).await;
                fresh.insert(w, v);
            }
            call = Some(made);
        }
        let mut out = Vec::with_capacity(words.len());
        for (w, kept) in words.iter().zip(found) {
            let v = kept
                .or_else(|| fresh.get(w).cloned())
                .ok_or(CallError::NoVector)?;
            out.push(v.as_ref().clone());
        }
        Ok((out, call))
    }

    /// The candidates at or above the threshold, most similar first, at
    /// most [`VERIFIED_PER_LOOKUP`] (each may cost the verifier an
    /// embedding call).
    pub fn shortlist(&self, vector: &[f32], candidates: Vec<Candidate>) -> Vec<(Candidate, f64)> {
        let mut near: Vec<(Candidate, f64)> = candidates
            .into_iter()
            .map(|c| {
                let similarity = cosine(vector, &c.vector);
                (c, similarity)
            })
            .filter(|(_, similarity)| *similarity >= self.config.threshold)
            .collect();
        near.sort_by(|a, b| b.1.total_cmp(&a.1));
        near.truncate(VERIFIED_PER_LOOKUP);
        near
    }
}
