//! The verifier at the API: of the shortlisted neighbours, the most
//! similar one whose differences do not change the question's meaning
//! serves. The exact-match rules (`sluice_core::cache::verify::compare`)
//! refuse first, without a call; then either the word check (differing
//! words the lexicon relates to a counterpart settled, the others of
//! every shortlisted neighbour embedded in one call) or the judge model
//! (one call per neighbour, most similar first, until one is the same
//! question). Every call is a ledger row of its own.

use sluice_core::cache::verify::{compare, Check, Differing, Refusal};
use sluice_store::cache::Candidate;

use super::semantic::{CacheCall, SemanticIndex};

/// The neighbour that serves, and how close it was.
pub struct Served {
    pub candidate: Candidate,
    pub similarity: f64,
    /// The weakest counterpart of a differing word by vectors (1 when none
    /// needed one; `None` when the word check did not run).
    pub word_similarity: Option<f64>,
}

/// What verifying a shortlist found: the neighbour that serves (if any),
/// the calls it made and why the others did not serve.
#[derive(Default)]
pub struct Verdicts {
    pub served: Option<Served>,
    pub calls: Vec<CacheCall>,
    pub refusals: Vec<Refusal>,
    /// A call failed: nothing is served.
    pub failed: bool,
}

/// Verifies `shortlist` (most similar first) for `question` by `check`.
pub async fn first_served(
    index: &SemanticIndex,
    question: &str,
    check: Check,
    shortlist: Vec<(Candidate, f64)>,
) -> Verdicts {
    let mut verdicts = Verdicts::default();
    if check == Check::Unverified {
        verdicts.served = shortlist
            .into_iter()
            .next()
            .map(|(candidate, similarity)| Served {
                candidate,
                similarity,
                word_similarity: None,
            });
        return verdicts;
    }
    let mut passed: Vec<(Candidate, f64, Differing)> = Vec::new();
    for (candidate, similarity) in shortlist {
        match compare(question, &candidate.text) {
            Ok(differing) => passed.push((candidate, similarity, differing)),
            Err(refusal) => verdicts.refusals.push(refusal),
        }
    }
    match check {
        Check::Words(floor) => by_words(index, floor, passed, &mut verdicts).await,
        Check::Judge => by_judge(index, question, passed, &mut verdicts).await,
        Check::Unverified => {}
    }
    verdicts
}

/// The judge asked of each neighbour in turn: the first it calls the same
/// question serves.
async fn by_judge(
    index: &SemanticIndex,
    question: &str,
    passed: Vec<(Candidate, f64, Differing)>,
    verdicts: &mut Verdicts,
) {
    for (candidate, similarity, _) in passed {
        match index.judge(&candidate.text, question).await {
            Ok((same, call)) => {
                verdicts.calls.push(call);
                if same {
                    verdicts.served = Some(Served {
                        candidate,
                        similarity,
                        word_similarity: None,
                    });
                    return;
                }
                verdicts.refusals.push(Refusal::Judge);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the judge could not be asked; not serving");
                verdicts.failed = true;
                return;
            }
        }
    }
}

/// The first neighbour whose differing words all have a counterpart serves:
/// one the lexicon relates, or else (with word vectors on) one at or above
/// `floor`.
async fn by_words(
    index: &SemanticIndex,
    floor: f64,
    passed: Vec<(Candidate, f64, Differing)>,
    verdicts: &mut Verdicts,
) {
    let passed: Vec<(Candidate, f64, Differing)> = match index.lexicon() {
        Some(lexicon) => passed
            .into_iter()
            .map(|(c, s, d)| (c, s, d.unsettled(|a, b| lexicon.related(a, b))))
            .collect(),
        None => passed,
    };
    // Every unsettled word of every neighbour left, each once, in one call
    // (none without word vectors: an unsettled word then refuses).
    let mut words: Vec<String> = Vec::new();
    if index.word_vectors() {
        for (_, _, d) in &passed {
            for w in &d.words {
                if !words.contains(w) {
                    words.push(w.clone());
                }
            }
        }
    }
    let vectors = if words.is_empty() {
        Vec::new()
    } else {
        match index.embed_words(&words).await {
            Ok((vectors, call)) => {
                verdicts.calls.extend(call);
                vectors
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot embed the differing words; not serving");
                verdicts.failed = true;
                return;
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
            return;
        }
        verdicts.refusals.push(Refusal::Counterpart);
    }
}
