//! The economics workload: seeded, reproducible chat requests shaped like
//! production traffic, or a user's own requests replayed from a JSONL file
//! in the OpenAI batch line format.
//!
//! - Input and output token counts are drawn from log-normal distributions
//!   (long-tailed: most requests are short, a few are very long) with the
//!   given means (the input's tail is in the user's part).
//! - Each feature has its own system prompt, which its requests share (the
//!   prefix a provider's prompt cache and Sluice's batcher can use); the
//!   rest of the input is the user's message.
//! - A share of requests repeat an earlier one: exactly, or as a paraphrase
//!   (the same content words, reordered, with other filler words).
//! - Tenants and features are labels on every request.
//!
//! Token counts follow the mock provider's tokenizer (one token per four
//! bytes), so the mock bills what was drawn.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Spec {
    pub requests: usize,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
    /// The share of requests that repeat an earlier one.
    pub repeat_share: f64,
    /// Of the repeats, the share that are paraphrases rather than exact.
    pub paraphrase_share: f64,
    pub features: usize,
    pub tenants: usize,
    pub model: String,
    pub seed: u64,
    /// The share of requests that may wait (background work: summaries,
    /// evaluations), drawn on its own so that the rest of the workload is
    /// the same whatever the share.
    pub deferrable_share: f64,
}

/// How a request came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unique,
    Repeat,
    Paraphrase,
}

/// One request of the workload.
#[derive(Clone, Debug)]
pub struct Request {
    pub tenant: String,
    pub feature: String,
    /// The OpenAI-shaped chat body, with `model`.
    pub body: Value,
    pub kind: Kind,
    /// Background work that may wait for its answer (a deadline).
    pub deferrable: bool,
}

/// The spread of the log-normal draws (σ of the underlying normal): with
/// 0.8 the 99th percentile is about five times the mean.
const SIGMA: f64 = 0.8;
/// The share of a request's input that its feature's system prompt makes.
const SYSTEM_SHARE: f64 = 0.6;

const WORDS: [&str; 24] = [
    "order",
    "invoice",
    "refund",
    "account",
    "delivery",
    "password",
    "upgrade",
    "contract",
    "shipment",
    "warranty",
    "discount",
    "payment",
    "subscription",
    "address",
    "receipt",
    "schedule",
    "ticket",
    "device",
    "license",
    "report",
    "balance",
    "export",
    "login",
    "plan",
];
const FILLERS: [&str; 6] = ["please", "could", "you", "the", "about", "my"];

fn log_normal(rng: &mut StdRng, mean: f64) -> f64 {
    let mu = mean.max(1.0).ln() - SIGMA * SIGMA / 2.0;
    let (u, v): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    (mu + SIGMA * normal).exp()
}

/// `tokens` tokens of text (four bytes each) from `words`.
fn text(rng: &mut StdRng, tokens: usize) -> Vec<String> {
    let bytes = tokens * 4;
    let mut out = Vec::new();
    let mut len = 0;
    while len < bytes {
        let w = WORDS[rng.gen_range(0..WORDS.len())];
        len += w.len() + 1;
        out.push(w.to_owned());
    }
    out
}

/// The same content words, reordered, with filler words between them.
fn paraphrase(rng: &mut StdRng, words: &[String]) -> String {
    let mut words = words.to_vec();
    words.shuffle(rng);
    let mut out = Vec::with_capacity(words.len() + words.len() / 4);
    for (i, w) in words.into_iter().enumerate() {
        if i % 4 == 0 {
            out.push(FILLERS[rng.gen_range(0..FILLERS.len())].to_owned());
        }
        out.push(w);
    }
    out.join(" ")
}

fn body(model: &str, system: &str, user: &str, max_tokens: u64) -> Value {
    json!({"model": model, "temperature": 0, "max_tokens": max_tokens,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
}

/// Generates the workload `spec` describes; the same spec, the same requests.
pub fn generate(spec: &Spec) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let system_tokens = (spec.mean_input_tokens * SYSTEM_SHARE) as usize;
    let systems: Vec<String> = (0..spec.features.max(1))
        .map(|f| {
            format!(
                "You are the assistant of feature {f}. {}",
                text(&mut rng, system_tokens).join(" ")
            )
        })
        .collect();
    // Earlier unique requests: feature, tenant, user words, max_tokens.
    let mut uniques: Vec<(usize, usize, Vec<String>, u64)> = Vec::new();
    let mut out = Vec::with_capacity(spec.requests);
    let mut waits = StdRng::seed_from_u64(spec.seed ^ 0xdefe_77ab);
    for _ in 0..spec.requests {
        let repeat = !uniques.is_empty() && rng.gen_bool(spec.repeat_share.clamp(0.0, 1.0));
        let (kind, feature, tenant, user, max_tokens) = if repeat {
            let (f, t, words, max) = uniques[rng.gen_range(0..uniques.len())].clone();
            if rng.gen_bool(spec.paraphrase_share.clamp(0.0, 1.0)) {
                (Kind::Paraphrase, f, t, paraphrase(&mut rng, &words), max)
            } else {
                (Kind::Repeat, f, t, words.join(" "), max)
            }
        } else {
            let f = rng.gen_range(0..systems.len());
            let t = rng.gen_range(0..spec.tenants.max(1));
            // The feature's system prompt is fixed; the user's part carries
            // the rest of the mean, and the long tail.
            let user_mean = (spec.mean_input_tokens - system_tokens as f64).max(1.0);
            let user_tokens = log_normal(&mut rng, user_mean).max(1.0) as usize;
            let words = text(&mut rng, user_tokens);
            let max = log_normal(&mut rng, spec.mean_output_tokens).clamp(1.0, 16_384.0) as u64;
            uniques.push((f, t, words.clone(), max));
            (Kind::Unique, f, t, words.join(" "), max)
        };
        out.push(Request {
            tenant: format!("tenant-{tenant}"),
            feature: format!("feature-{feature}"),
            body: body(&spec.model, &systems[feature], &user, max_tokens),
            kind,
            deferrable: waits.gen_bool(spec.deferrable_share.clamp(0.0, 1.0)),
        });
    }
    out
}

/// Requests from a JSONL file in the OpenAI batch line format
/// (`{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`),
/// each sent as `model` unless it names one of its own; the tenant is the
/// line's `metadata.tenant` and the feature `metadata.feature`, if given.
pub fn replay(text: &str, model: &str) -> Result<Vec<Request>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let at = |why: String| format!("line {}: {why}", i + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let url = v["url"].as_str().unwrap_or("/v1/chat/completions");
            if url != "/v1/chat/completions" {
                return Err(at(format!(
                    "only /v1/chat/completions lines are replayed (got {url})"
                )));
            }
            let mut body = v
                .get("body")
                .filter(|b| b.is_object())
                .cloned()
                .ok_or_else(|| at("no `body` object".into()))?;
            if body.get("model").is_none() {
                body["model"] = json!(model);
            }
            let label = |name: &str, default: &str| {
                v.pointer(&format!("/body/metadata/{name}"))
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_owned()
            };
            Ok(Request {
                tenant: label("tenant", "tenant-0"),
                feature: label("feature", "replay"),
                body,
                kind: Kind::Unique,
                deferrable: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: usize) -> Spec {
        Spec {
            requests,
            mean_input_tokens: 1200.0,
            mean_output_tokens: 300.0,
            repeat_share: 0.65,
            paraphrase_share: 0.3,
            features: 6,
            tenants: 3,
            model: "mock-small".into(),
            seed: 7,
            deferrable_share: 0.4,
        }
    }

    fn tokens(text: &str) -> f64 {
        (text.len() as f64 / 4.0).ceil()
    }

    #[test]
    fn the_deferrable_share_marks_requests_and_changes_nothing_else() {
        let w = generate(&spec(5000));
        let share = w.iter().filter(|r| r.deferrable).count() as f64 / w.len() as f64;
        assert!((share - 0.4).abs() < 0.03, "deferrable share {share}");
        let none = generate(&Spec {
            deferrable_share: 0.0,
            ..spec(5000)
        });
        assert!(none.iter().all(|r| !r.deferrable));
        assert!(w.iter().zip(&none).all(|(a, b)| a.body == b.body));
    }

    #[test]
    fn same_seed_same_workload() {
        let (a, b) = (generate(&spec(200)), generate(&spec(200)));
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.body == y.body && x.tenant == y.tenant));
        let mut other = spec(200);
        other.seed = 8;
        assert_ne!(generate(&other)[0].body, a[0].body);
    }

    #[test]
    fn means_shares_and_prefixes_follow_the_spec() {
        let w = generate(&spec(5000));
        let n = w.len() as f64;
        let unique: Vec<&Request> = w.iter().filter(|r| r.kind == Kind::Unique).collect();
        let repeats = w.len() - unique.len();
        assert!(
            (repeats as f64 / n - 0.65).abs() < 0.03,
            "repeat share {}",
            repeats as f64 / n
        );
        let paraphrases = w.iter().filter(|r| r.kind == Kind::Paraphrase).count();
        assert!((paraphrases as f64 / repeats as f64 - 0.3).abs() < 0.04);
        let input: f64 = unique
            .iter()
            .map(|r| {
                let m = r.body["messages"].as_array().unwrap();
                tokens(m[0]["content"].as_str().unwrap())
                    + tokens(m[1]["content"].as_str().unwrap())
            })
            .sum::<f64>()
            / unique.len() as f64;
        assert!((input / 1200.0 - 1.0).abs() < 0.1, "mean input {input}");
        let output: f64 = unique
            .iter()
            .map(|r| r.body["max_tokens"].as_f64().unwrap())
            .sum::<f64>()
            / unique.len() as f64;
        assert!((output / 300.0 - 1.0).abs() < 0.1, "mean output {output}");
        // Long-tailed: the largest draw is several times the mean.
        let max = unique
            .iter()
            .map(|r| r.body["max_tokens"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(max > 4.0 * 300.0, "max output {max}");
        // Six features, six system prompts, shared by their requests.
        let systems: std::collections::HashSet<&str> = w
            .iter()
            .map(|r| r.body["messages"][0]["content"].as_str().unwrap())
            .collect();
        assert_eq!(systems.len(), 6);
    }

    #[test]
    fn a_repeat_equals_an_earlier_request_and_a_paraphrase_shares_its_words() {
        let w = generate(&spec(300));
        let user = |r: &Request| {
            r.body["messages"][1]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        for (i, r) in w.iter().enumerate() {
            match r.kind {
                Kind::Repeat => assert!(w[..i].iter().any(|e| e.body == r.body)),
                Kind::Paraphrase => {
                    let mut words: Vec<String> = user(r)
                        .split(' ')
                        .filter(|t| !FILLERS.contains(t))
                        .map(str::to_owned)
                        .collect();
                    words.sort();
                    assert!(w[..i].iter().any(|e| {
                        let mut theirs: Vec<String> =
                            user(e).split(' ').map(str::to_owned).collect();
                        theirs.sort();
                        e.kind == Kind::Unique && theirs == words
                    }));
                }
                Kind::Unique => {}
            }
        }
    }

    #[test]
    fn replay_reads_batch_lines_and_says_which_line_is_wrong() {
        let text = r#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "metadata": {"tenant": "acme", "feature": "faq"}}}

{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-x", "messages": []}}"#;
        let r = replay(text, "mock-small").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].body["model"], "mock-small");
        assert_eq!(
            (r[0].tenant.as_str(), r[0].feature.as_str()),
            ("acme", "faq")
        );
        assert_eq!(r[1].body["model"], "gpt-x");
        let bad = replay("{\"url\": \"/v1/embeddings\", \"body\": {}}", "m").unwrap_err();
        assert!(bad.starts_with("line 1:"), "{bad}");
        assert!(replay("not json", "m").unwrap_err().starts_with("line 1:"));
    }
}
