//! The semantic cache's judge: a configured chat model asked whether a new
//! question and a cached one are the same question, before the cached
//! answer serves (`[cache.semantic] judge_model`). Pure functions: the
//! request the API sends and how it reads the reply.
//!
//! Why a judge: whether a swapped word keeps the meaning ("bill" /
//! "invoice") or changes it ("order" / "subscription") is knowledge of
//! words that a distributional embedding does not hold (docs/benchmarks.md,
//! "Catching more paraphrases: what was tried"); a language model holds
//! it. The verifier's exact-match rules still run first (a changed number,
//! negation or date is refused without a call), and the judge replaces the
//! word check. Each judge call is a ledger row of its own.

use serde_json::{json, Value};

/// What the judge is told a cache hit must be.
pub const SYSTEM: &str = "You check a cache of answers. Two questions are the same when one \
answer answers both: the same thing, the same action, the same amounts, dates and negations; \
wording may differ. Reply with one word: yes or no.";

/// The most tokens the judge may answer with: a verdict is one word.
pub const MAX_TOKENS: u64 = 2;

/// The chat request that asks `model` whether `new` asks what `cached`
/// asked.
pub fn request(model: &str, cached: &str, new: &str) -> Value {
    json!({
        "model": model,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": format!(
                "Question A: {cached}\nQuestion B: {new}\nAre A and B the same question?"
            )},
        ],
    })
}

/// Whether the judge's answer (an OpenAI-shaped chat completion) says the
/// questions are the same: its reply starts with "yes". Anything else, an
/// empty or a missing reply included, is a no: a refusal costs a provider
/// call, a wrong yes a wrong answer.
pub fn says_same(answer: &Value) -> bool {
    answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(|reply| reply.trim_start().to_lowercase())
        .is_some_and(|reply| reply.starts_with("yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content: Value) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
    }

    #[test]
    fn the_request_names_both_questions_and_asks_for_one_word() {
        let body = request(
            "judge-mini",
            "How do I cancel my order?",
            "Can I cancel my order?",
        );
        assert_eq!(body["model"], "judge-mini");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["max_tokens"], MAX_TOKENS);
        assert_eq!(body["messages"][0]["content"], SYSTEM);
        assert_eq!(
            body["messages"][1]["content"],
            "Question A: How do I cancel my order?\nQuestion B: Can I cancel my order?\n\
             Are A and B the same question?"
        );
    }

    #[test]
    fn only_a_reply_starting_with_yes_is_a_yes() {
        for yes in ["yes", "Yes.", "  YES", "yes, they are"] {
            assert!(says_same(&reply(json!(yes))), "{yes:?}");
        }
        for no in ["no", "No.", "", "maybe", "The answer is yes", "y"] {
            assert!(!says_same(&reply(json!(no))), "{no:?}");
        }
        assert!(!says_same(&reply(Value::Null)), "no content");
        assert!(!says_same(&json!({"choices": []})), "no choice");
    }
}
