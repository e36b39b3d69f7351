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
//!
//! The files are read here, line by line, keeping only senses and those
//! links (an API process is about 30 MB larger): a general reader
//! (`wordnet-db`) keeps the whole database, glosses and all, and left it
//! 130 MB larger.
//! The format is WordNet's `wndb(5)`, unchanged since 1998.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::cache::SemanticConfig;

/// WordNet's pointers between senses that keep a word's meaning.
const SAME_MEANING: &[&str] = &[
    "+", // derivationally related form
    "&", // similar to (adjectives)
    "^", // also see
    "$", // verb group
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pos {
    Noun,
    Verb,
    Adj,
    Adv,
}

impl Pos {
    /// A pointer's part of speech (`s`: an adjective satellite).
    fn from_mark(mark: &str) -> Option<Self> {
        match mark {
            "n" => Some(Self::Noun),
            "v" => Some(Self::Verb),
            "a" | "s" => Some(Self::Adj),
            "r" => Some(Self::Adv),
            _ => None,
        }
    }
}

/// A sense: its part of speech and its offset in that part's data file.
type Sense = (Pos, u32);

/// Morphy's detachment rules for a part of speech: (suffix, replacement).
type Rules = &'static [(&'static str, &'static str)];

/// Each part of speech, its files' suffix (`index.noun`, `data.noun`,
/// `noun.exc`) and its rules.
const PARTS_OF_SPEECH: [(Pos, &str, Rules); 4] = [
    (
        Pos::Noun,
        "noun",
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
        "verb",
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
        "adj",
        &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    ),
    (Pos::Adv, "adv", &[]),
];

#[derive(Debug, thiserror::Error)]
#[error("cannot load the lexicon (a WordNet database) from {dir}: {reason}")]
pub struct LoadError {
    dir: PathBuf,
    reason: String,
}

/// What the verifier needs of WordNet.
pub struct Lexicon {
    /// Each part of speech's lemmas, in [`PARTS_OF_SPEECH`]'s order.
    parts: Vec<Part>,
    /// The senses one same-meaning link away from a sense, for those that
    /// have any.
    links: HashMap<Sense, Vec<Sense>>,
}

/// One part of speech's lemmas and irregular forms.
#[derive(Default)]
struct Part {
    /// Every sense of each lemma (lower-case, `_` for a space).
    senses: HashMap<String, Vec<Sense>>,
    /// Irregular forms and their lemmas (`geese` → `goose`).
    exceptions: HashMap<String, Vec<String>>,
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

    /// Reads the WordNet database in `dir`: `index.*` and `data.*` for
    /// each part of speech, and the `*.exc` exception lists when present.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let failed = |reason: String| LoadError {
            dir: dir.to_owned(),
            reason,
        };
        let mut lexicon = Self {
            parts: Vec::new(),
            links: HashMap::new(),
        };
        for (pos, name, _) in PARTS_OF_SPEECH {
            let mut part = Part::default();
            each_line(&dir.join(format!("index.{name}")), true, |line| {
                let (lemma, senses) = index_entry(line, pos)?;
                part.senses.insert(lemma, senses);
                Some(())
            })
            .map_err(failed)?;
            each_line(&dir.join(format!("data.{name}")), true, |line| {
                let (sense, linked) = data_links(line, pos)?;
                if !linked.is_empty() {
                    lexicon.links.insert(sense, linked);
                }
                Some(())
            })
            .map_err(failed)?;
            each_line(&dir.join(format!("{name}.exc")), false, |line| {
                let mut words = line.split_ascii_whitespace();
                let form = words.next()?.to_owned();
                part.exceptions
                    .insert(form, words.map(str::to_owned).collect());
                Some(())
            })
            .map_err(failed)?;
            lexicon.parts.push(part);
        }
        Ok(lexicon)
    }

    /// How many lemmas it knows (each part of speech counted apart).
    pub fn lemmas(&self) -> usize {
        self.parts.iter().map(|p| p.senses.len()).sum()
    }

    /// Whether `a` and `b` can mean the same (see the module's doc).
    pub fn related(&self, a: &str, b: &str) -> bool {
        let (sa, sb) = (self.senses(a), self.senses(b));
        let linked = |from: &[Sense], to: &[Sense]| {
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
    fn senses(&self, word: &str) -> Vec<Sense> {
        let mut out: Vec<Sense> = Vec::new();
        for ((_, _, rules), part) in PARTS_OF_SPEECH.iter().zip(&self.parts) {
            let mut add = |lemma: &str| {
                for id in part.senses.get(lemma).into_iter().flatten() {
                    if !out.contains(id) {
                        out.push(*id);
                    }
                }
            };
            add(word);
            for lemma in part.exceptions.get(word).into_iter().flatten() {
                add(lemma);
            }
            for (suffix, replacement) in rules.iter() {
                if let Some(stem) = word.strip_suffix(suffix) {
                    add(&format!("{stem}{replacement}"));
                }
            }
        }
        out
    }
}

/// Calls `each` with every line of `path` but the licence header (lines
/// that start with a space); a line it cannot read fails the load with
/// its number. A missing file is an error when `required`, else nothing.
fn each_line(
    path: &Path,
    required: bool,
    mut each: impl FnMut(&str) -> Option<()>,
) -> Result<(), String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        // Latin-1 in places: a byte that is not UTF-8 is not in a lemma
        // the verifier looks up.
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(' ') || line.trim().is_empty() {
            continue;
        }
        if each(&line).is_none() {
            return Err(format!(
                "{}: line {} is not WordNet's format",
                path.display(),
                n + 1
            ));
        }
    }
    Ok(())
}

/// An `index.*` line: `lemma pos synset_cnt p_cnt [ptr_symbol…] sense_cnt
/// tagsense_cnt synset_offset…`.
fn index_entry(line: &str, pos: Pos) -> Option<(String, Vec<Sense>)> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let senses: usize = fields.get(2)?.parse().ok()?;
    let pointers: usize = fields.get(3)?.parse().ok()?;
    let first = 4 + pointers + 2;
    let offsets = fields.get(first..first + senses)?;
    let senses = offsets
        .iter()
        .map(|o| o.parse().ok().map(|o| (pos, o)))
        .collect::<Option<Vec<Sense>>>()?;
    Some((fields.first()?.to_lowercase(), senses))
}

/// A `data.*` line's sense and the senses its same-meaning pointers reach:
/// `offset lex_filenum ss_type w_cnt (word lex_id)… p_cnt (symbol offset
/// pos source/target)… [frames] | gloss`.
fn data_links(line: &str, pos: Pos) -> Option<(Sense, Vec<Sense>)> {
    let before_gloss = line.split(" | ").next()?;
    let fields: Vec<&str> = before_gloss.split_ascii_whitespace().collect();
    let offset: u32 = fields.first()?.parse().ok()?;
    let words = usize::from_str_radix(fields.get(3)?, 16).ok()?;
    let at = 4 + 2 * words;
    let pointers: usize = fields.get(at)?.parse().ok()?;
    let mut linked = Vec::new();
    for pointer in fields.get(at + 1..at + 1 + 4 * pointers)?.chunks_exact(4) {
        if SAME_MEANING.contains(&pointer[0]) {
            linked.push((Pos::from_mark(pointer[2])?, pointer[1].parse().ok()?));
        }
    }
    Some(((pos, offset), linked))
}

#[cfg(test)]
mod tests;
