//! The verifier at the API: of the shortlisted neighbours, the most
//! similar one whose differing words do not change the question's meaning
//! (`sluice_core::cache::verify`) serves. The differing words of every
//! shortlisted neighbour are embedded in one call, so a lookup makes at
//! most two embedding calls (the question, then the words), each a ledger
//! row of its own.

use sluice_core::cache::verify::{compare, Differing, Refusal};
use sluice_store::cache::Candidate;

use super::semantic::{EmbedCall, SemanticIndex};

/// The neighbour that serves, and how close it was.
pub struct Served {
    pub candidate: Candidate,
    pub similarity: f64,
    /// The weakest counterpart of a differing word (1 when none differs;
    /// `None` when not verified).
    pub word_similarity: Option<f64>,
}

/// What verifying a shortlist found: the neighbour that serves (if any),
/// the embedding call it made (if it made one) and why the others did not
/// serve.
#[derive(Default)]
pub struct Verdicts {
    pub served: Option<Served>,
    pub call: Option<EmbedCall>,
    pub refusals: Vec<Refusal>,
    /// The differing words could not be embedded: nothing is served.
    pub failed: bool,
}

/// Verifies `shortlist` (most similar first) for `question`: the first
/// neighbour whose differing words all have a counterpart at or above
/// `floor` serves. With no floor (the tenant accepts any error) the most
/// similar one serves unverified.
pub async fn first_served(
    index: &SemanticIndex,
    question: &str,
    floor: Option<f64>,
    shortlist: Vec<(Candidate, f64)>,
) -> Verdicts {
    let mut verdicts = Verdicts::default();
    let Some(floor) = floor else {
        verdicts.served = shortlist
            .into_iter()
            .next()
            .map(|(candidate, similarity)| Served {
                candidate,
                similarity,
                word_similarity: None,
            });
        return verdicts;
    };
    let mut passed: Vec<(Candidate, f64, Differing)> = Vec::new();
    for (candidate, similarity) in shortlist {
        match compare(question, &candidate.text) {
            Ok(differing) => passed.push((candidate, similarity, differing)),
            Err(refusal) => verdicts.refusals.push(refusal),
        }
    }
    // Every differing word of every neighbour left, each once, in one call.
    let mut words: Vec<String> = Vec::new();
    for (_, _, d) in &passed {
        for w in &d.words {
            if !words.contains(w) {
                words.push(w.clone());
            }
        }
    }
    let vectors = if words.is_empty() {
        Vec::new()
    } else {
        match index.embed_words(&words).await {
            Ok((vectors, call)) => {
                verdicts.call = call;
                vectors
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot embed the differing words; not serving");
                verdicts.failed = true;
                return verdicts;
            }
        }
    };
    for (candidate, similarity, differing) in passed {
        // This neighbour's words' vectors, in its own order.
        let own: Vec<Vec<f32>> = differing
            .words
            .iter()
            .filter_map(|w| words.iter().position(|x| x == w))
            .filter_map(|i| vectors.get(i).cloned())
            .collect();
        let word_similarity = differing.weakest(&own);
        if word_similarity >= floor {
            verdicts.served = Some(Served {
                candidate,
                similarity,
                word_similarity: Some(word_similarity),
            });
            return verdicts;
        }
        verdicts.refusals.push(Refusal::Counterpart);
    }
    verdicts
}
