//! The semantic cache's verifier: before a neighbour's answer is served,
//! the words that differ between the new question and the cached one must
//! not change its meaning. Pure functions; the API embeds the differing
//! words (one batched call) and asks [`Differing::hold`].
//!
//! Why a verifier: a sentence embedding scores a one-word change that
//! flips the meaning ("cancel my order" / "cancel my subscription", 0.94
//! with multilingual-e5-small) as close as a paraphrase, so no static
//! threshold is both useful and safe. The verifier checks, in order:
//!
//! 1. what must match exactly: numbers (digits and number words), the
//!    parity of negations, dates (weekdays, months, relative days),
//!    opposite particles (`on`/`off`, `up`/`down`, `in`/`out`), and the
//!    degree of a word both share (`small` / `smaller`);
//! 2. every content word present in one question and not the other has a
//!    close counterpart (cosine at or above a floor) among the other's
//!    content words, by the same embedder.
//!
//! Refusing costs a provider call; serving a wrong answer costs the
//! caller's trust, so every rule errs on the side of refusing. The word
//! lists are general English (function words, negations, number and date
//! words), not any probe set's nouns.

use std::collections::BTreeSet;

use super::lsh::cosine;

/// Words that carry no meaning of their own in a question.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "mine", "we", "us", "our", "ours", "you", "your", "yours",
    "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "is", "am", "are",
    "was", "were", "be", "been", "being", "do", "does", "did", "done", "doing", "have", "has",
    "had", "having", "will", "would", "shall", "should", "can", "could", "may", "might", "must",
    "to", "of", "for", "from", "with", "at", "by", "about", "as", "into", "onto", "over", "under",
    "again", "then", "here", "there", "when", "where", "why", "how", "what", "which", "who",
    "whom", "whose", "this", "that", "these", "those", "and", "or", "but", "if", "so", "than",
    "too", "very", "just", "also", "only", "own", "same", "such", "both", "each", "more", "most",
    "other", "some", "any", "all", "let", "please", "thanks", "thank", "hi", "hello", "get", "got",
    "getting", "want", "like", "need", "know", "tell", "way", "possible", "able", "help", "s", "m",
    "d", "ll", "ve", "re",
];

/// Words that negate what follows (`n't` is split off as `not`).
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "cannot", "nothing", "none", "nobody", "neither", "nor",
];

/// Number words: a count changed is a different question.
const NUMBER_WORDS: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand", "once",
    "twice", "thrice", "half", "double", "single", "first", "second", "third",
];

/// Date words: a day changed is a different question.
const DATE_WORDS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "weekend",
];

/// Particles whose opposite reverses an action (`turn on` / `turn off`).
const OPPOSITES: &[(&str, &str)] = &[("on", "off"), ("up", "down"), ("in", "out")];

/// Why a neighbour's answer was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Number,
    Negation,
    Date,
    Opposite,
    Degree,
    /// A differing word has no close counterpart in the other question.
    Counterpart,
    /// The cached entry has no question text to compare (filed before the
    /// verifier was).
    NoText,
    /// The judge model said the questions are not the same.
    Judge,
}

impl Refusal {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Negation => "negation",
            Self::Date => "date",
            Self::Opposite => "opposite",
            Self::Degree => "degree",
            Self::Counterpart => "counterpart",
            Self::NoText => "no_text",
            Self::Judge => "judge",
        }
    }
}

/// One question's words, sorted into what the verifier compares.
#[derive(Debug, Default, PartialEq)]
struct Words {
    negations: usize,
    numbers: Vec<String>,
    dates: Vec<String>,
    particles: BTreeSet<&'static str>,
    /// Content words: (stem, the word as written), in order.
    content: Vec<(String, String)>,
}

/// The lower-cased word tokens of `text`, `n't` split off as `not`.
fn tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    let mut out = Vec::new();
    for raw in lower.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let word = raw.trim_matches('\'');
        if word.is_empty() {
            continue;
        }
        if word == "can't" || word == "won't" {
            out.push(word[..2].to_owned());
            out.push("not".to_owned());
        } else if let Some(stem) = word.strip_suffix("n't") {
            out.push(stem.to_owned());
            out.push("not".to_owned());
        } else {
            // `order's` reads as `order`; `i'd` as `i` and `d`.
            out.extend(
                word.split('\'')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}

/// A light stem: a plural or a verb ending dropped, so `orders`,
/// `ordered` and `ordering` compare equal.
fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(s) = word.strip_suffix(suffix) {
            if s.chars().count() >= 3 {
                return s.to_owned();
            }
        }
    }
    word.to_owned()
}

/// A word's base and degree (0 plain, 1 comparative, 2 superlative):
/// `bigger` is (`big`, 1), `large` (`larg`, 0), `largest` (`larg`, 2).
fn degree(word: &str) -> (String, u8) {
    let plain = |w: &str| w.strip_suffix('e').unwrap_or(w).to_owned();
    for (suffix, d) in [("est", 2), ("er", 1)] {
        if let Some(base) = word.strip_suffix(suffix) {
            if base.chars().count() >= 3 {
                let b = base.as_bytes();
                let n = b.len();
                let undoubled = if n >= 2 && b[n - 1] == b[n - 2] {
                    &base[..n - 1]
                } else {
                    base
                };
                return (plain(undoubled), d);
            }
        }
    }
    (plain(word), 0)
}

fn is_number(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit()) || NUMBER_WORDS.contains(&word)
}

fn words(text: &str) -> Words {
    let mut w = Words::default();
    for token in tokens(text) {
        let t = token.as_str();
        if NEGATIONS.contains(&t) {
            w.negations += 1;
        } else if is_number(t) {
            w.numbers.push(token);
        } else if DATE_WORDS.contains(&t) {
            w.dates.push(token);
        } else if let Some(p) = OPPOSITES
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .find(|p| *p == t)
        {
            w.particles.insert(p);
        } else if !FUNCTION_WORDS.contains(&t) {
            w.content.push((stem(t), token));
        }
    }
    w.numbers.sort();
    w.dates.sort();
    w
}

/// The words the embedder must place close for a neighbour to serve.
#[derive(Debug, Default, PartialEq)]
pub struct Differing {
    /// Every word to embed, each once: the differing words and the
    /// content words they may find a counterpart among.
    pub words: Vec<String>,
    /// (a differing word, the words it may find its counterpart among),
    /// as indices into `words`.
    checks: Vec<(usize, Vec<usize>)>,
}

impl Differing {
    /// Nothing differs but function words: no embedding call needed.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The weakest of the differing words' best counterparts, given the
    /// vectors of [`Differing::words`] in order (1 when nothing differs;
    /// minus infinity, which no floor admits, when a vector is missing).
    pub fn weakest(&self, vectors: &[Vec<f32>]) -> f64 {
        if vectors.len() != self.words.len() {
            return f64::NEG_INFINITY;
        }
        self.checks
            .iter()
            .map(|(word, others)| {
                others
                    .iter()
                    .map(|o| cosine(&vectors[*word], &vectors[*o]))
                    .fold(f64::MIN, f64::max)
            })
            .fold(1.0, f64::min)
    }

    /// Whether every differing word has a counterpart at or above `floor`.
    pub fn hold(&self, vectors: &[Vec<f32>], floor: f64) -> bool {
        self.weakest(vectors) >= floor
    }

    /// What is left for the vectors once a lexicon has settled every
    /// differing word that has a counterpart it calls `related` (two words
    /// that can mean the same): the unsettled checks, their words only.
    pub fn unsettled(&self, related: impl Fn(&str, &str) -> bool) -> Differing {
        let mut out = Differing::default();
        for (word, others) in &self.checks {
            let w = &self.words[*word];
            if others.iter().any(|o| related(w, &self.words[*o])) {
                continue;
            }
            let i = out.index(w);
            let others = others.iter().map(|o| out.index(&self.words[*o])).collect();
            out.checks.push((i, others));
        }
        out
    }

    /// `word`'s place in [`Differing::words`], added if new.
    fn index(&mut self, word: &str) -> usize {
        match self.words.iter().position(|w| w == word) {
            Some(i) => i,
            None => {
                self.words.push(word.to_owned());
                self.words.len() - 1
            }
        }
    }
}

/// Compares a new question with a cached one: a refusal, or the differing
/// words whose counterparts must hold.
pub fn compare(new: &str, cached: &str) -> Result<Differing, Refusal> {
    if cached.trim().is_empty() {
        return Err(Refusal::NoText);
    }
    let (a, b) = (words(new), words(cached));
    if a.numbers != b.numbers {
        return Err(Refusal::Number);
    }
    if a.negations % 2 != b.negations % 2 {
        return Err(Refusal::Negation);
    }
    if a.dates != b.dates {
        return Err(Refusal::Date);
    }
    let opposed = OPPOSITES.iter().any(|(x, y)| {
        let one_way = |p: &BTreeSet<&str>, q: &BTreeSet<&str>| {
            p.contains(x) && q.contains(y) && !p.contains(y) && !q.contains(x)
        };
        one_way(&a.particles, &b.particles) || one_way(&b.particles, &a.particles)
    });
    if opposed {
        return Err(Refusal::Opposite);
    }
    let degrees = |w: &Words| -> BTreeSet<(String, u8)> {
        w.content.iter().map(|(_, word)| degree(word)).collect()
    };
    let (da, db) = (degrees(&a), degrees(&b));
    let changed_degree = da
        .iter()
        .any(|(base, d)| db.iter().any(|(o, e)| o == base && e != d));
    if changed_degree {
        return Err(Refusal::Degree);
    }
    Ok(differing(&a, &b))
}

fn differing(a: &Words, b: &Words) -> Differing {
    let stems =
        |w: &Words| -> BTreeSet<String> { w.content.iter().map(|(s, _)| s.clone()).collect() };
    let (sa, sb) = (stems(a), stems(b));
    let mut out = Differing::default();
    for (this, other, other_stems) in [(a, b, &sb), (b, a, &sa)] {
        let mut seen = BTreeSet::new();
        for (s, word) in &this.content {
            if other_stems.contains(s) || !seen.insert(s.clone()) {
                continue;
            }
            let i = out.index(word);
            let mut others = Vec::new();
            let mut other_seen = BTreeSet::new();
            for (os, oword) in &other.content {
                if other_seen.insert(os.clone()) {
                    others.push(out.index(oword));
                }
            }
            out.checks.push((i, others));
        }
    }
    out
}

/// What each word floor served on the bench's probe set: (floor, wrong
/// hits, hits), with multilingual-e5-small, a threshold of 0.90 and the
/// bench's order, replayed offline through this verifier; the bench's
/// verified rows confirm it (docs/benchmarks.md, which also has a
/// held-out check: the bound does not transfer exactly at this size).
/// Loosest first; -1 is no word check (only the exact-match rules).
pub const CALIBRATION: &[(f64, u32, u32)] = &[
    (-1.0, 49, 125),
    (0.88, 16, 50),
    (0.89, 2, 20),
    (0.895, 1, 14),
    (0.90, 0, 10),
];

/// What the same bench measured with no verifier at all (a static
/// threshold of 0.90): (wrong hits, hits).
pub const UNVERIFIED: (u32, u32) = (54, 126);

/// The loosest word floor whose measured share of wrong hits is at most
/// `max_error` (the strictest when none is); `None`, no verification,
/// when any error is accepted (`max_error` 1).
pub fn word_floor(max_error: f64) -> Option<f64> {
    if max_error >= 1.0 {
        return None;
    }
    CALIBRATION
        .iter()
        .find(|(_, wrong, hits)| f64::from(*wrong) <= max_error * f64::from(*hits))
        .or(CALIBRATION.last())
        .map(|(floor, _, _)| *floor)
}

/// How a job's semantic hits are verified, chosen from the share of wrong
/// hits it accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Check {
    /// Any error accepted: the most similar neighbour serves unverified.
    Unverified,
    /// The exact-match rules, then every differing word's counterpart at
    /// or above this floor.
    Words(f64),
    /// The exact-match rules, then the judge model ([`super::judge`]).
    Judge,
}

impl Check {
    /// The check for a job accepting `max_error`, where `judge_error` is
    /// the share of wrong hits measured for the configured judge (none
    /// configured: `None`): the judge when that is within what the job
    /// accepts, else the word floor calibrated for it.
    pub fn for_error(max_error: f64, judge_error: Option<f64>) -> Self {
        match word_floor(max_error) {
            None => Self::Unverified,
            Some(_) if judge_error.is_some_and(|e| e <= max_error) => Self::Judge,
            Some(floor) => Self::Words(floor),
        }
    }

    /// The error rate expected of the hits this check serves.
    pub fn expected_error(self, judge_error: Option<f64>) -> f64 {
        match self {
            Self::Unverified => expected_error(None),
            Self::Words(floor) => expected_error(Some(floor)),
            Self::Judge => judge_error.unwrap_or(1.0),
        }
    }
}

/// The error rate expected of hits served at `floor` (`None`: unverified):
/// the measured share, smoothed ((wrong + 1) / (hits + 2)) so that a few
/// hits with no wrong one do not read as a certainty.
pub fn expected_error(floor: Option<f64>) -> f64 {
    let smoothed = |wrong: u32, hits: u32| f64::from(wrong + 1) / f64::from(hits + 2);
    let Some(floor) = floor else {
        return smoothed(UNVERIFIED.0, UNVERIFIED.1);
    };
    CALIBRATION
        .iter()
        .rev()
        .find(|(f, _, _)| *f <= floor)
        .map_or(1.0, |(_, wrong, hits)| smoothed(*wrong, *hits))
}

#[cfg(test)]
mod tests;
