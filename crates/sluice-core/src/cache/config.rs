//! The `[cache]` table of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether the API answers from the cache at all.
    pub enabled: bool,
    /// How long an answer is kept when the request does not say.
    pub default_ttl_s: u64,
    /// The longest `cache.ttl_s` a request may ask for.
    pub max_ttl_s: u64,
    pub semantic: SemanticConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_ttl_s: 3_600,
            max_ttl_s: 7 * 86_400,
            semantic: SemanticConfig::default(),
        }
    }
}

/// The semantic cache: prompts are embedded, filed in locality-sensitive
/// buckets, and a neighbour above `threshold` answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticConfig {
    /// The model (a configured route to an embeddings endpoint) that
    /// embeds prompts. Without one, the semantic cache is off.
    pub model: Option<String>,
    /// The least cosine similarity for a cached question to be shortlisted;
    /// the verifier decides whether it serves. The default is the
    /// threshold the verifier's calibration was measured at.
    pub threshold: f64,
    /// Tenants (by name) whose jobs use the semantic cache unless a job
    /// says otherwise.
    pub tenants: Vec<String>,
    /// Bands of the locality-sensitive signature: more bands find more
    /// neighbours, at more buckets per lookup, and rank them finer (a
    /// lookup compares those sharing the most buckets first).
    pub bands: usize,
    /// Hyperplanes per band: more bits make each bucket narrower (and
    /// miss more neighbours near the threshold).
    pub bits_per_band: usize,
    /// Seeds the hyperplanes; every replica must use the same one.
    pub seed: u64,
    /// At most this many candidates are compared per lookup.
    pub max_candidates: usize,
    /// The share of semantic hits that may be wrong answers: it sets how
    /// close the words that differ between two questions must embed for
    /// the cached answer to serve ([`super::verify::word_floor`]). A job
    /// may ask for its own (`cache.max_error`).
    pub max_error: f64,
    /// A chat model (a configured route) asked whether a new question and
    /// a cached one are the same before the cached answer serves, in place
    /// of the word check ([`super::judge`]). Each call is a ledger row.
    pub judge_model: Option<String>,
    /// The share of the judge's hits that were wrong answers, as measured
    /// for `judge_model` (`sluice-bench cache --semantic --judge`): a job
    /// that accepts less gets the word check instead, and it feeds the
    /// error estimate. Required with `judge_model`.
    pub judge_error: Option<f64>,
    /// A WordNet database directory (`index.*`, `data.*`, `*.exc`; Debian's
    /// `wordnet-base` installs one at `/usr/share/wordnet`): a differing
    /// word with a synonym (or a derived form) among the other question's
    /// content words needs no vector. Loaded at start-up.
    pub lexicon: Option<PathBuf>,
    /// Whether differing words the lexicon does not settle are embedded
    /// (a second embedding call) and held to the word floor. `false`
    /// refuses them instead: a lookup makes one embedding call at most.
    pub word_vectors: bool,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        Self {
            model: None,
            threshold: 0.90,
            tenants: Vec::new(),
            bands: 32,
            bits_per_band: 6,
            seed: 0x5eed_cafe,
            max_candidates: 64,
            max_error: 0.01,
            judge_model: None,
            judge_error: None,
            lexicon: None,
            word_vectors: true,
        }
    }
}

impl CacheConfig {
    /// What is wrong with the table, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_ttl_s == 0 || self.default_ttl_s > self.max_ttl_s {
            return Err("cache: default_ttl_s must be above 0 and at most max_ttl_s".to_owned());
        }
        let s = &self.semantic;
        if !(s.threshold > 0.0 && s.threshold <= 1.0) {
            return Err(format!(
                "cache.semantic: threshold must be in (0, 1] (got {})",
                s.threshold
            ));
        }
        if s.bands == 0 || s.bits_per_band == 0 || s.bits_per_band > 32 {
            return Err(
                "cache.semantic: bands must be above 0 and bits_per_band within 1..=32".to_owned(),
            );
        }
        if !(s.max_error > 0.0 && s.max_error <= 1.0) {
            return Err(format!(
                "cache.semantic: max_error must be in (0, 1] (got {})",
                s.max_error
            ));
        }
        match (&s.judge_model, s.judge_error) {
            (Some(_), None) => {
                return Err(
                    "cache.semantic: judge_model needs judge_error, the share of the \
                     judge's hits measured wrong (sluice-bench cache --semantic --judge)"
                        .to_owned(),
                )
            }
            (None, Some(_)) => {
                return Err("cache.semantic: judge_error is set but no judge_model".to_owned())
            }
            (_, Some(e)) if !(0.0..1.0).contains(&e) => {
                return Err(format!(
                    "cache.semantic: judge_error must be in [0, 1) (got {e})"
                ))
            }
            _ => {}
        }
        if s.max_candidates == 0 {
            return Err("cache.semantic: max_candidates must be above 0".to_owned());
        }
        Ok(())
    }
}
