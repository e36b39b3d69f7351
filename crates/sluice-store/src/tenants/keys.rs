//! API keys: how they are made, hashed and shown.
//!
//! A key is `sk-sluice-` followed by 40 base62 characters from the
//! operating system's CSPRNG (about 238 bits). Only its SHA-256 hash is
//! stored, so a key is unrecoverable from the store; since keys are long
//! and random, an unsalted fast hash is enough.

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};

/// What every Sluice API key starts with.
pub const KEY_PREFIX: &str = "sk-sluice-";

/// How many random base62 characters follow the prefix.
const KEY_RANDOM_LEN: usize = 40;

/// How many leading characters of a key are safe to show
/// (the prefix and 4 random characters).
const DISPLAY_PREFIX_LEN: usize = 14;

/// A fresh API key: [`KEY_PREFIX`] and 40 random base62 characters.
pub fn generate_key() -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_LEN);
    key.push_str(KEY_PREFIX);
    key.extend(
        OsRng
            .sample_iter(&Alphanumeric)
            .take(KEY_RANDOM_LEN)
            .map(char::from),
    );
    key
}

/// The lowercase hex SHA-256 of a key: what the store keeps.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters of a key, safe to show (`sk-sluice-AbC1`).
pub(crate) fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// Whether a presented string could be a Sluice key at all; anything else
/// is turned away without asking the store.
pub(crate) fn looks_like_key(presented: &str) -> bool {
    presented.len() == KEY_PREFIX.len() + KEY_RANDOM_LEN
        && presented.starts_with(KEY_PREFIX)
        && presented[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_have_the_prefix_and_40_base62_chars() {
        let key = generate_key();
        assert!(key.starts_with(KEY_PREFIX));
        let rest = &key[KEY_PREFIX.len()..];
        assert_eq!(rest.len(), 40);
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(looks_like_key(&key));
    }

    #[test]
    fn generated_keys_differ() {
        let keys: HashSet<String> = (0..1000).map(|_| generate_key()).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = generate_key();
        let hash = hash_key(&key);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, hash_key(&key));
        assert!(!hash.contains(&key[KEY_PREFIX.len()..]));
    }

    #[test]
    fn display_prefix_is_the_first_14_chars() {
        let key = generate_key();
        let shown = display_prefix(&key);
        assert_eq!(shown.len(), 14);
        assert!(key.starts_with(&shown));
        assert_eq!(display_prefix("short"), "short");
    }

    #[test]
    fn only_well_formed_keys_look_like_keys() {
        assert!(!looks_like_key(""));
        assert!(!looks_like_key(KEY_PREFIX));
        assert!(!looks_like_key(&format!("sk-other-{}", "a".repeat(41))));
        assert!(!looks_like_key(&format!("{KEY_PREFIX}{}", "a".repeat(39))));
        assert!(!looks_like_key(&format!("{KEY_PREFIX}{}!", "a".repeat(39))));
        assert!(!looks_like_key(&format!("{KEY_PREFIX}{}é", "a".repeat(38))));
        assert!(looks_like_key(&format!("{KEY_PREFIX}{}", "a".repeat(40))));
    }
}
