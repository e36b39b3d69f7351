//! The mock's deterministic "model": its answers, its tokenizer and its
//! embeddings. Everything here is a pure function of the input text, so a
//! test can recompute what any request must have been answered.

use sha2::{Digest, Sha256};

/// Every answer starts with this marker, so a test can tell a mock answer
/// from anything else.
pub const ANSWER_PREFIX: &str = "mock:";

/// How many hex digits of the prompt's SHA-256 the answer carries. Sixteen
/// (64 bits) make an accidental collision between two test prompts
/// practically impossible while keeping answers short.
const ANSWER_HEX_DIGITS: usize = 16;

/// The word that pads an answer up to the requested length. It is exactly
/// four bytes long, so under [`count_tokens`] each copy adds one token.
const PAD_WORD: &str = " tok";

/// The answer the mock gives to `prompt`: `"mock:"` followed by the first
/// 16 hex digits of the SHA-256 of the prompt's UTF-8 bytes.
pub fn answer_text(prompt: &str) -> String {
    let digest = hex::encode(Sha256::digest(prompt.as_bytes()));
    let mut answer = String::with_capacity(ANSWER_PREFIX.len() + ANSWER_HEX_DIGITS);
    answer.push_str(ANSWER_PREFIX);
    answer.push_str(digest.get(..ANSWER_HEX_DIGITS).unwrap_or(&digest));
    answer
}

/// The mock's tokenizer: one token per started group of four bytes, that is
/// `ceil(len_in_bytes / 4)`. Empty text has no tokens; any non-empty text
/// has at least one.
///
/// This is the usual rule of thumb for English text with BPE tokenizers;
/// it is not any real model's tokenizer, and does not try to be.
pub fn count_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The text generated for `prompt` when the request asks for `max_tokens`
/// completion tokens.
///
/// It starts with [`answer_text`] and is padded with four-byte words so that
/// `count_tokens(text) == max_tokens`. The answer itself is 21 bytes, that is
/// 6 tokens; when `max_tokens` is smaller than that, the answer is returned
/// whole (the mock never truncates it) and the caller still reports
/// `max_tokens` as the usage.
pub fn generate(prompt: &str, max_tokens: u64) -> String {
    let mut text = answer_text(prompt);
    // ceil((len + 4 * pad) / 4) == ceil(len / 4) + pad, so each pad word
    // adds exactly one token whatever the answer's length.
    let pad = max_tokens.saturating_sub(count_tokens(&text));
    let pad = usize::try_from(pad).unwrap_or(usize::MAX);
    text.reserve(pad.saturating_mul(PAD_WORD.len()));
    for _ in 0..pad {
        text.push_str(PAD_WORD);
    }
    text
}

/// The first token of `text` as a streamed answer sends it: four bytes (the
/// tokenizer's [`count_tokens`] unit), or a little more so as not to cut a
/// character; all of `text` when shorter. Empty only when `text` is.
pub fn first_token(text: &str) -> &str {
    let mut end = text.len().min(4);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text.get(..end).unwrap_or(text)
}

/// `text` cut into its tokens, as a streamed answer sends them (see
/// [`first_token`]); they concatenate to exactly `text`. For ASCII text
/// there are exactly [`count_tokens`] of them.
pub fn token_pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let piece = first_token(rest);
        rest = rest.get(piece.len()..).unwrap_or_default();
        (!piece.is_empty()).then_some(piece)
    })
}

/// A unit-length embedding of `text` with `dims` components.
///
/// The components are drawn from SHA-256 in counter mode, seeded by the
/// SHA-256 of the text, mapped to `[-1, 1]` and normalised, so equal texts
/// get equal vectors and different texts get (almost surely) different ones.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let seed = Sha256::digest(text.as_bytes());
    let mut raw: Vec<f64> = Vec::with_capacity(dims);
    let mut block: u64 = 0;
    while raw.len() < dims {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update(block.to_le_bytes());
        for chunk in hasher.finalize().chunks_exact(4) {
            let &[a, b, c, d] = chunk else { continue };
            if raw.len() == dims {
                break;
            }
            let unit = f64::from(u32::from_le_bytes([a, b, c, d])) / f64::from(u32::MAX);
            raw.push(unit * 2.0 - 1.0);
        }
        block += 1;
    }
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    raw.into_iter().map(|x| (x * scale) as f32).collect()
}

/// Words too common to say what a text is about.
const STOPWORDS: [&str; 32] = [
    "a", "an", "the", "is", "are", "was", "of", "to", "in", "on", "for", "and", "or", "me", "my",
    "i", "you", "your", "it", "this", "that", "please", "what", "whats", "how", "can", "could",
    "would", "do", "does", "with", "about",
];

/// How many components a semantic embedding has unless the request asks.
pub const SEMANTIC_DIMS: usize = 256;

/// A unit-length embedding of `text` that is close for paraphrases: the
/// normalised sum of one random unit vector per content word (lower-cased,
/// a plural `s` dropped, stopwords skipped). Texts with the same content
/// words in any order get the same vector; texts sharing most of them get
/// close ones; unrelated texts get nearly orthogonal ones.
pub fn semantic_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut sum = vec![0f64; dims];
    let lower = text.to_lowercase();
    let words = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        .map(|w| w.strip_suffix('s').filter(|s| s.len() > 2).unwrap_or(w));
    for word in words {
        for (s, x) in sum.iter_mut().zip(embedding(&format!("word:{word}"), dims)) {
            *s += f64::from(x);
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        return embedding(text, dims);
    }
    sum.into_iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn semantic_embeddings_are_close_for_paraphrases_only() {
        let e = |t: &str| semantic_embedding(t, SEMANTIC_DIMS);
        let a = e("Summarize the quarterly sales report for the board");
        assert!(
            cos(
                &a,
                &e("For the board, summarize the quarterly sales reports, please")
            ) > 0.99
        );
        assert!(cos(&a, &e("Summarize the quarterly sales report for investors")) > 0.75);
        assert!(cos(&a, &e("Translate this poem into French")).abs() < 0.3);
        assert_eq!(a, e("Summarize the quarterly sales report for the board"));
    }

    #[test]
    fn answer_is_prefix_and_sha_digits() {
        let answer = answer_text("hello");
        // SHA-256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e...
        assert_eq!(answer, "mock:2cf24dba5fb0a30e");
        assert_eq!(count_tokens(&answer), 6);
    }

    #[test]
    fn count_tokens_rounds_up() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("a"), 1);
        assert_eq!(count_tokens("abcd"), 1);
        assert_eq!(count_tokens("abcde"), 2);
        // Bytes, not chars: "é" is two bytes.
        assert_eq!(count_tokens("éé"), 1);
        assert_eq!(count_tokens("ééé"), 2);
    }

    #[test]
    fn token_pieces_concatenate_to_the_text() {
        for text in [
            "",
            "a",
            "abcd",
            "abcde",
            "mock:2cf24dba5fb0a30e tok tok",
            "éé",
            "aéé€x😀",
        ] {
            let pieces: Vec<&str> = token_pieces(text).collect();
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= 7));
            if text.is_ascii() {
                assert_eq!(pieces.len() as u64, count_tokens(text), "{text:?}");
            }
        }
        assert_eq!(token_pieces("aéé€").collect::<Vec<_>>(), ["aéé", "€"]);
        assert_eq!(first_token("😀x"), "😀");
    }

    #[test]
    fn generate_has_exactly_max_tokens() {
        for max in 6..200 {
            let text = generate("some prompt", max);
            assert!(text.starts_with(&answer_text("some prompt")));
            assert_eq!(count_tokens(&text), max, "max_tokens = {max}");
        }
    }

    #[test]
    fn generate_below_answer_length_keeps_whole_answer() {
        for max in 0..6 {
            assert_eq!(generate("p", max), answer_text("p"));
        }
    }

    #[test]
    fn embedding_is_deterministic_unit_length() {
        for dims in [1, 3, 8, 16, 100] {
            let a = embedding("text", dims);
            assert_eq!(a.len(), dims);
            assert_eq!(a, embedding("text", dims));
            let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        assert_ne!(embedding("one", 16), embedding("two", 16));
        assert!(embedding("x", 0).is_empty());
    }
}
