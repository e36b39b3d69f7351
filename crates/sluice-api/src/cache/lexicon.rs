//! The verifier's lexicon: WordNet, read at start-up from its database
//! files (`[cache.semantic] lexicon`). It says whether two words can mean
//! the same, which a sentence embedder cannot: "bill" and "invoice"
//! share a sense, "order" and "subscription" do not, though both pairs
//! embed equally close (docs/benchmarks.md, "A lexicon").
//!
//! Two words are related when some sense of one (any part of speech,
//! after WordNet's own lemmatizer, morphy) is a sense of the other, or is
//! one link from it: a derived form (`delete` / `deletion`), a similar
//! adjective (`broken` / `damaged`), an "also see", a verb group. Not a
//! broader or narrower term: a kind of a thing is another question.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::cache::SemanticConfig;

use wordnet_db::WordNet;
use wordnet_types::{Pos, SynsetId};

/// WordNet's pointers between senses that keep a word's meaning.
const SAME_MEANING: &[&str] = &[
    "+", // derivationally related form
    "&", // similar to (adjectives)
    "^", // also see
    "$", // verb group
];

/// Morphy's detachment rules for a part of speech: (suffix, replacement).
type Rules = &'static [(&'static str, &'static str)];

/// Each part of speech, its exception list's file, and its rules.
const PARTS_OF_SPEECH: [(Pos, &str, Rules); 4] = [
    (
        Pos::Noun,
        "noun.exc",
        &[
            ("s", ""),
            ("ses", "s"),
            ("xes", "x"),
            ("zes", "z"),
            ("ches", "ch"),
            ("shes", "sh"),
            ("men", "man"),
            ("ies", "y"),
        ],
    ),
    (
        Pos::Verb,
        "verb.exc",
        &[
            ("s", ""),
            ("ies", "y"),
            ("es", "e"),
            ("es", ""),
            ("ed", "e"),
            ("ed", ""),
            ("ing", "e"),
            ("ing", ""),
        ],
    ),
    (
        Pos::Adj,
        "adj.exc",
        &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    ),
    (Pos::Adv, "adv.exc", &[]),
];

#[derive(Debug, thiserror::Error)]
#[error("cannot load the lexicon (a WordNet database) from {dir}: {reason}")]
pub struct LoadError {
    dir: PathBuf,
    reason: String,
}

/// What the verifier needs of WordNet, kept compact (the parsed database,
/// glosses and all, is about 150 MB; this is a tenth of it).
pub struct Lexicon {
    /// Every sense of each lemma (lower-case, `_` for a space), per part
    /// of speech.
    senses: HashMap<(Pos, String), Vec<SynsetId>>,
    /// The senses one same-meaning link away from a sense, for those that
    /// have any.
    links: HashMap<SynsetId, Vec<SynsetId>>,
    /// Irregular forms and their lemmas (`geese` → `goose`), per part of
    /// speech.
    exceptions: HashMap<(Pos, String), Vec<String>>,
}

impl Lexicon {
    /// The lexicon `config.lexicon` names, loaded (none named: none).
    pub fn configured(config: &SemanticConfig) -> Result<Option<Arc<Self>>, LoadError> {
        config
            .lexicon
            .as_deref()
            .map(|dir| Self::load(dir).map(Arc::new))
            .transpose()
    }

    /// Reads the WordNet database in `dir` (`index.*`, `data.*`, and the
    /// `*.exc` exception lists when present).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let failed = |reason: String| LoadError {
            dir: dir.to_owned(),
            reason,
        };
        let db = WordNet::load(dir).map_err(|e| failed(format!("{e:#}")))?;
        let mut senses: HashMap<(Pos, String), Vec<SynsetId>> = HashMap::new();
        let mut links: HashMap<SynsetId, Vec<SynsetId>> = HashMap::new();
        for synset in db.iter_synsets() {
            for word in &synset.words {
                senses
                    .entry((synset.id.pos, lemma(word.text)))
                    .or_default()
                    .push(synset.id);
            }
            let linked: Vec<SynsetId> = synset
                .pointers
                .iter()
                .filter(|p| SAME_MEANING.contains(&p.symbol))
                .map(|p| p.target)
                .collect();
            if !linked.is_empty() {
                links.entry(synset.id).or_default().extend(linked);
            }
        }
        let mut exceptions = HashMap::new();
        for (pos, file, _) in PARTS_OF_SPEECH {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(format!("{}: {e}", path.display()))),
            };
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let Some(form) = words.next() {
                    exceptions.insert((pos, form.to_owned()), words.map(str::to_owned).collect());
                }
            }
        }
        Ok(Self {
            senses,
            links,
            exceptions,
        })
    }

    /// Whether `a` and `b` can mean the same (see the module's doc).
    pub fn related(&self, a: &str, b: &str) -> bool {
        let (sa, sb) = (self.senses(a), self.senses(b));
        let linked = |from: &[SynsetId], to: &[SynsetId]| {
            from.iter()
                .filter_map(|id| self.links.get(id))
                .flatten()
                .any(|target| to.contains(target))
        };
        sa.iter().any(|s| sb.contains(s)) || linked(&sa, &sb) || linked(&sb, &sa)
    }

    /// Every sense of `word`, in every part of speech: those of the word
    /// itself, of the lemmas its exception list gives, and of what
    /// morphy's detachment rules make of it (`invoices` → `invoice`).
    fn senses(&self, word: &str) -> Vec<SynsetId> {
        let mut out: Vec<SynsetId> = Vec::new();
        for (pos, _, rules) in PARTS_OF_SPEECH {
            let detached = rules.iter().filter_map(|(suffix, replacement)| {
                word.strip_suffix(suffix)
                    .map(|stem| format!("{stem}{replacement}"))
            });
            let listed = self
                .exceptions
                .get(&(pos, word.to_owned()))
                .into_iter()
                .flatten()
                .cloned();
            for lemma in std::iter::once(word.to_owned())
                .chain(listed)
                .chain(detached)
            {
                for id in self.senses.get(&(pos, lemma)).into_iter().flatten() {
                    if !out.contains(id) {
                        out.push(*id);
                    }
                }
            }
        }
        out
    }
}

/// A data file's word as the index spells it: lower-case, without an
/// adjective's position marker (`galore(ip)` → `galore`).
fn lemma(word: &str) -> String {
    let bare = match word.find('(') {
        Some(i) if word.ends_with(')') => &word[..i],
        _ => word,
    };
    bare.to_lowercase()
}

#[cfg(test)]
mod tests;
