use super::*;

fn refusal(a: &str, b: &str) -> Option<Refusal> {
    compare(a, b).err()
}

#[test]
fn what_must_match_exactly_is_refused_when_it_changes() {
    let cases = [
        (
            "Can I return an item 20 days after delivery?",
            "Can I return an item 90 days after delivery?",
            Refusal::Number,
        ),
        (
            "I was charged twice for the same order.",
            "I was charged three times for the same order.",
            Refusal::Number,
        ),
        (
            "Can I pause my subscription for a month?",
            "Can I pause my subscription for six months?",
            Refusal::Number,
        ),
        (
            "Did my invoice arrive?",
            "Didn't my invoice arrive?",
            Refusal::Negation,
        ),
        (
            "I received the email.",
            "I did not receive the email.",
            Refusal::Negation,
        ),
        (
            "Is the office open on Friday?",
            "Is the office open on Monday?",
            Refusal::Date,
        ),
        (
            "Is support open on December 25?",
            "Is support open on December 27?",
            Refusal::Number,
        ),
        (
            "How do I turn on dark mode?",
            "How do I turn off dark mode?",
            Refusal::Opposite,
        ),
        (
            "The jacket is too small, can I get a bigger one?",
            "The jacket is too big, can I get a smaller one?",
            Refusal::Degree,
        ),
    ];
    for (a, b, why) in cases {
        assert_eq!(refusal(a, b), Some(why), "{a} / {b}");
        assert_eq!(refusal(b, a), Some(why), "{b} / {a}");
    }
}

#[test]
fn function_words_plurals_and_order_change_nothing() {
    let d = compare(
        "Summarize the quarterly sales report for the board",
        "For the board, summarize the quarterly sales reports, please",
    )
    .unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert!(d.hold(&[], 0.99));
    // Two negations are none; `can't` is `can not`.
    assert!(compare("Can't I not log in?", "Can I log in?").is_ok());
    assert!(compare("I can't log in", "I cannot log in").is_ok());
    // A particle on one side only is no opposite.
    assert!(compare(
        "Can I pick up my parcel in a store?",
        "Can I collect my parcel at a store?"
    )
    .is_ok());
}

#[test]
fn differing_words_need_a_counterpart_from_the_other_question() {
    let d = compare(
        "How do I cancel my order?",
        "How do I cancel my subscription?",
    )
    .unwrap();
    // Each differing word is embedded once, with the other's content words.
    assert_eq!(d.words, ["order", "cancel", "subscription"]);
    let v = |x: f32, y: f32| vec![x, y];
    // order ≈ subscription: they hold; order ⟂ subscription: they do not.
    let close = [v(1.0, 0.0), v(0.0, 1.0), v(0.99, 0.14)];
    let far = [v(1.0, 0.0), v(0.0, 1.0), v(0.6, 0.8)];
    assert!(d.hold(&close, 0.95));
    assert!(!d.hold(&far, 0.95));
    assert!((d.weakest(&far) - 0.6).abs() < 1e-6);
    // Vectors that do not match the words never hold.
    assert!(!d.hold(&close[..2], 0.0));
}

#[test]
fn a_lexicon_settles_the_words_it_relates_and_leaves_the_others() {
    let d = compare(
        "How do I cancel my bill and my order?",
        "How do I cancel my invoice and my subscription?",
    )
    .unwrap();
    let lexicon = |a: &str, b: &str| matches!((a, b), ("bill", "invoice") | ("invoice", "bill"));
    let left = d.unsettled(lexicon);
    // bill/invoice settled both ways; order and subscription still need
    // vectors, against the other's content words.
    assert_eq!(
        left.words,
        ["order", "cancel", "invoice", "subscription", "bill"]
    );
    assert!(!left.is_empty());
    let v = |x: f32, y: f32| vec![x, y];
    let far = [
        v(1.0, 0.0),
        v(0.0, 1.0),
        v(0.0, 1.0),
        v(0.6, 0.8),
        v(0.0, 1.0),
    ];
    assert!((left.weakest(&far) - 0.6).abs() < 1e-6);
    // A lexicon that relates every pair leaves nothing: no call needed.
    let none = d.unsettled(|_, _| true);
    assert!(none.is_empty() && none.words.is_empty());
    assert_eq!(none.weakest(&[]), 1.0);
    // One that relates nothing leaves the whole check.
    assert_eq!(d.unsettled(|_, _| false), d);
}

#[test]
fn a_cached_entry_without_text_is_refused() {
    assert_eq!(refusal("Anything?", " "), Some(Refusal::NoText));
}

#[test]
fn degrees_and_stems() {
    assert_eq!(degree("bigger"), ("big".to_owned(), 1));
    assert_eq!(degree("largest"), ("larg".to_owned(), 2));
    assert_eq!(degree("large"), ("larg".to_owned(), 0));
    assert_eq!(stem("orders"), stem("ordered"));
    assert_eq!(
        tokens("Where's my order? It isn't here."),
        ["where", "s", "my", "order", "it", "is", "not", "here"]
    );
}

#[test]
fn the_floor_is_the_loosest_one_measured_within_the_error() {
    let strictest = CALIBRATION.last().unwrap().0;
    assert_eq!(word_floor(0.0), Some(strictest));
    assert_eq!(word_floor(0.99), Some(CALIBRATION[0].0));
    assert_eq!(word_floor(1.0), None, "any error accepted: no verification");
    for &(floor, wrong, hits) in CALIBRATION {
        let share = f64::from(wrong) / f64::from(hits);
        assert!(word_floor(share).unwrap() <= floor);
        assert!(
            expected_error(Some(floor)) > share,
            "smoothed above the measured share"
        );
    }
    // Stricter floors are expected to err less; no verifier, most.
    let mut errors = vec![expected_error(None)];
    errors.extend(CALIBRATION.iter().map(|c| expected_error(Some(c.0))));
    assert!(errors.windows(2).all(|w| w[0] >= w[1]), "{errors:?}");
}

#[test]
fn the_judge_checks_jobs_that_accept_its_error_and_the_word_floor_the_others() {
    assert_eq!(Check::for_error(1.0, Some(0.01)), Check::Unverified);
    assert_eq!(Check::for_error(0.01, Some(0.01)), Check::Judge);
    assert_eq!(Check::for_error(0.2, Some(0.01)), Check::Judge);
    // Stricter than the judge measured: the word check, as with no judge.
    assert_eq!(
        Check::for_error(0.005, Some(0.01)),
        Check::Words(word_floor(0.005).unwrap())
    );
    assert_eq!(
        Check::for_error(0.01, None),
        Check::Words(word_floor(0.01).unwrap())
    );
    assert_eq!(Check::Judge.expected_error(Some(0.004)), 0.004);
    let floor = word_floor(0.01).unwrap();
    assert_eq!(
        Check::Words(floor).expected_error(Some(0.004)),
        expected_error(Some(floor))
    );
    assert_eq!(Check::Unverified.expected_error(None), expected_error(None));
}
