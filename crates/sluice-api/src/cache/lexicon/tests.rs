use std::path::{Path, PathBuf};

use super::Lexicon;

/// A WordNet-format fixture with a few made-up senses.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wordnet")
}

#[test]
fn synonyms_derived_forms_and_similar_adjectives_are_related() {
    let lexicon = Lexicon::load(&fixture()).unwrap();
    // Every index line, the header skipped.
    assert_eq!(lexicon.lemmas(), 7 + 2 + 2 + 1);
    for (a, b) in [
        ("bill", "invoice"),
        ("invoice", "bill"),
        // Inflected forms, through morphy's rules and exception lists.
        ("invoices", "bills"),
        ("cancelled", "cancel"),
        // A derived form, across parts of speech, both ways.
        ("deleted", "deletion"),
        ("deletion", "delete"),
        // Similar adjectives (the data file writes `damaged(p)`).
        ("broken", "damaged"),
        ("damaged", "damaged"),
        ("bill", "bill"),
    ] {
        assert!(lexicon.related(a, b), "{a} / {b}");
    }
}

#[test]
fn different_things_and_unknown_words_are_not() {
    let lexicon = Lexicon::load(&fixture()).unwrap();
    for (a, b) in [
        ("order", "subscription"),
        ("bill", "order"),
        ("cancel", "delete"),
        // No rule makes `cancel` of it, and no exception lists it.
        ("cancelling", "cancel"),
        // Not in the lexicon: it knows nothing, so it relates nothing.
        ("paypal", "bitcoin"),
        ("paypal", "paypal"),
    ] {
        assert!(!lexicon.related(a, b), "{a} / {b}");
    }
}

#[test]
fn a_directory_without_a_database_is_refused_with_its_path() {
    let dir = fixture().join("missing");
    let e = Lexicon::load(&dir).err().unwrap().to_string();
    assert!(e.contains("cannot load the lexicon"), "{e}");
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_line_out_of_format_is_refused_with_its_file_and_number() {
    let dir = std::env::temp_dir().join(format!("sluice-lexicon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let index = dir.join("index.noun");
    let mut text = std::fs::read_to_string(&index).unwrap();
    text.push_str("parcel n 2 0 1 0 00000100\n");
    std::fs::write(&index, text).unwrap();
    let e = Lexicon::load(&dir).err().unwrap().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("index.noun: line 9 is not WordNet's format"),
        "{e}"
    );
}
