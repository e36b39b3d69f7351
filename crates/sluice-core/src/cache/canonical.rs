//! The exact-cache key: a hash of the tenant, the endpoint and the
//! request body in a canonical form, so that requests that must get the
//! same answer share a key and any change that could alter the answer
//! makes a new one.
//!
//! Normalising a body: fields that cannot change the answer are dropped
//! (`user`, `metadata`, `store`, `stream`, `stream_options`,
//! `prompt_cache_key`); sampling defaults are filled in (so leaving out
//! `temperature` equals sending its default); integral numbers are written
//! as integers (`1.0` equals `1`); object keys are sorted and whitespace
//! removed.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::Endpoint;

/// Request fields that never change the answer.
const IGNORED: [&str; 6] = [
    "user",
    "metadata",
    "store",
    "stream",
    "stream_options",
    "prompt_cache_key",
];

/// The OpenAI defaults of the sampling parameters, per endpoint.
fn defaults(endpoint: Endpoint) -> &'static [(&'static str, DefaultValue)] {
    use DefaultValue::*;
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Completions => &[
            ("temperature", Int(1)),
            ("top_p", Int(1)),
            ("n", Int(1)),
            ("presence_penalty", Int(0)),
            ("frequency_penalty", Int(0)),
        ],
        Endpoint::Embeddings => &[("encoding_format", Str("float"))],
    }
}

enum DefaultValue {
    Int(i64),
    Str(&'static str),
}

/// The body in canonical form (see the module docs).
pub fn normalise(endpoint: Endpoint, body: &Value) -> Value {
    let mut body = numbers(body);
    if let Value::Object(map) = &mut body {
        for field in IGNORED {
            map.remove(field);
        }
        for (field, default) in defaults(endpoint) {
            if map.get(*field).is_none_or(Value::is_null) {
                let value = match default {
                    DefaultValue::Int(i) => Value::from(*i),
                    DefaultValue::Str(s) => Value::from(*s),
                };
                map.insert((*field).to_owned(), value);
            }
        }
    }
    body
}

/// `value` with every integral float written as an integer.
fn numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(integral(n)),
        Value::Array(items) => Value::Array(items.iter().map(numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

fn integral(n: &Number) -> Number {
    if n.is_f64() {
        if let Some(f) = n.as_f64() {
            // Within ±2^53 a float that has no fraction is an integer exactly.
            if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                return Number::from(f as i64);
            }
        }
    }
    n.clone()
}

/// Compact JSON with object keys sorted, whatever map order serde_json
/// was built with.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write(v, out);
                }
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The exact-cache key of a normalised request of `tenant`.
pub fn request_key(tenant: &str, endpoint: Endpoint, normalised: &Value) -> String {
    digest(&[
        "sluice-cache-v1",
        tenant,
        endpoint.path(),
        &canonical_json(normalised),
    ])
}

/// A short, key-safe name for a model in cache keys (so a tenant's
/// entries for one model can be found and cleared).
pub fn model_tag(model: &str) -> String {
    digest(&["model", model])[..12].to_owned()
}

/// Whether the request asks for one answer that does not vary between
/// calls: embeddings always; generations with one choice and either
/// `temperature: 0` or a `seed`.
pub fn is_deterministic(endpoint: Endpoint, normalised: &Value) -> bool {
    if endpoint == Endpoint::Embeddings {
        return true;
    }
    let n = normalised.get("n").and_then(Value::as_f64).unwrap_or(1.0);
    let temperature = normalised
        .get("temperature")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let seeded = normalised.get("seed").is_some_and(|s| !s.is_null());
    n == 1.0 && (temperature == 0.0 || seeded)
}

/// The question (what the semantic cache embeds) and the scope its
/// neighbours must share. For a chat, the question is the last message,
/// which must be the user's, alone: everything before it (the system
/// prompt, earlier turns) is context, and goes into the scope, so that a
/// feature's shared system prompt cannot make every question look like
/// every other. The scope is a hash of the tenant, the endpoint, that
/// context and every other parameter of the request. `None` for requests
/// the semantic cache does not serve (embeddings, prompt arrays, a chat
/// that does not end with a user's text).
pub fn semantic_parts(
    tenant: &str,
    endpoint: Endpoint,
    normalised: &Value,
) -> Option<(String, String)> {
    let mut rest = normalised.as_object()?.clone();
    let text = match endpoint {
        Endpoint::ChatCompletions => {
            let Value::Array(mut messages) = rest.remove("messages")? else {
                return None;
            };
            let last = messages.pop()?;
            if last.get("role")?.as_str()? != "user" {
                return None;
            }
            // The context stays in the scope, as it was sent.
            rest.insert("messages".into(), Value::Array(messages));
            message_text(&last)?
        }
        Endpoint::Completions => rest.remove("prompt")?.as_str()?.to_owned(),
        Endpoint::Embeddings => return None,
    };
    let scope = digest(&[
        "sluice-semantic-v2",
        tenant,
        endpoint.path(),
        &canonical_json(&Value::Object(rest)),
    ]);
    Some((text, scope))
}

/// A message's text: its content, or its text parts joined by spaces.
fn message_text(message: &Value) -> Option<String> {
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Option<Vec<_>>>()?
                .join(" "),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(tenant: &str, body: Value) -> String {
        let e = Endpoint::ChatCompletions;
        request_key(tenant, e, &normalise(e, &body))
    }

    #[test]
    fn key_order_whitespace_defaults_and_ignored_fields_do_not_matter() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
        let b: Value = serde_json::from_str(
            r#"{ "temperature" : 0.0, "messages":[{"content":"hi","role":"user"}],
                 "model":"m", "user": "u-1", "n": 1, "top_p": 1.0, "stream": false }"#,
        )
        .unwrap();
        assert_eq!(key("t", a), key("t", b));
    }

    #[test]
    fn any_parameter_the_tenant_or_the_endpoint_changes_the_key() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
        let k = key("t", base.clone());
        for (field, value) in [
            ("model", json!("m2")),
            ("temperature", json!(0.5)),
            ("max_tokens", json!(10)),
            ("seed", json!(1)),
            ("messages", json!([{"role": "user", "content": "hi!"}])),
        ] {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(key("t", changed), k, "{field}");
        }
        assert_ne!(key("other", base.clone()), k);
        let e = Endpoint::Completions;
        assert_ne!(request_key("t", e, &normalise(e, &base)), k);
    }

    #[test]
    fn determinism_needs_one_choice_and_zero_temperature_or_a_seed() {
        let e = Endpoint::ChatCompletions;
        let det = |b: Value| is_deterministic(e, &normalise(e, &b));
        assert!(!det(json!({"model": "m"})), "default temperature is 1");
        assert!(det(json!({"model": "m", "temperature": 0})));
        assert!(det(json!({"model": "m", "temperature": 0.7, "seed": 3})));
        assert!(!det(json!({"model": "m", "temperature": 0, "n": 2})));
        assert!(is_deterministic(
            Endpoint::Embeddings,
            &json!({"model": "e"})
        ));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": "s"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"s","b":{"a":[{"x":3,"y":2}],"z":1}}"#
        );
    }

    #[test]
    fn semantic_parts_split_the_prompt_from_its_scope() {
        let e = Endpoint::ChatCompletions;
        let body = |content: &str, max: u64| {
            normalise(
                e,
                &json!({"model": "m", "max_tokens": max,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]}),
            )
        };
        let (text, scope) = semantic_parts("t", e, &body("What is Rust?", 5)).unwrap();
        assert_eq!(text, "What is Rust?", "the user's turn alone");
        let (_, same) = semantic_parts("t", e, &body("Tell me about Rust", 5)).unwrap();
        assert_eq!(scope, same, "only the prompt differs");
        let (_, other) = semantic_parts("t", e, &body("What is Rust?", 6)).unwrap();
        assert_ne!(scope, other);
        let (_, tenant) = semantic_parts("u", e, &body("What is Rust?", 5)).unwrap();
        assert_ne!(scope, tenant);
        assert!(semantic_parts("t", Endpoint::Embeddings, &json!({"input": "x"})).is_none());
    }

    #[test]
    fn the_context_of_a_question_is_its_scope() {
        let e = Endpoint::ChatCompletions;
        let chat = |messages: Value| normalise(e, &json!({"model": "m", "messages": messages}));
        let ask = |system: &str, question: &str| {
            chat(
                json!([{"role": "system", "content": system}, {"role": "user", "content": question}]),
            )
        };
        let (_, support) =
            semantic_parts("t", e, &ask("You answer support questions.", "Hi")).unwrap();
        let (_, sales) = semantic_parts("t", e, &ask("You answer sales questions.", "Hi")).unwrap();
        assert_ne!(support, sales, "another system prompt is another scope");
        // An earlier turn is context too.
        let (text, follow_up) = semantic_parts(
            "t",
            e,
            &chat(json!([
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [{"type": "text", "text": "How"}, {"type": "text", "text": "are you?"}]},
            ])),
        )
        .unwrap();
        assert_eq!(text, "How are you?");
        let (_, fresh) = semantic_parts(
            "t",
            e,
            &chat(json!([{"role": "user", "content": "How are you?"}])),
        )
        .unwrap();
        assert_ne!(follow_up, fresh);
        // A chat that does not end with the user's text is not served.
        let ends_with_assistant = chat(
            json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]),
        );
        assert!(semantic_parts("t", e, &ends_with_assistant).is_none());
    }
}
