//! Job envelopes as clients submit them.

use serde_json::{json, Value};

/// A chat job the cache leaves alone (sampled, so not deterministic).
pub fn chat(text: &str) -> Value {
    json!({"body": {"model": "mock-small", "messages": [{"role": "user", "content": text}]}})
}

/// A chat job the cache takes part in (`temperature: 0`): repeats are
/// answered from the cache, or join the first while it is in flight.
pub fn cacheable(text: &str) -> Value {
    json!({"body": {"model": "mock-small", "temperature": 0,
                    "messages": [{"role": "user", "content": text}]}})
}

/// A cacheable chat job that asks for the semantic cache.
pub fn semantic(text: &str) -> Value {
    with(cacheable(text), "cache", json!({"semantic": true}))
}

/// `job` with `field` set to `value` in its envelope.
pub fn with(mut job: Value, field: &str, value: Value) -> Value {
    job[field] = value;
    job
}
