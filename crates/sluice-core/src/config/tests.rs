use super::*;

const GOOD: &str = r#"
[[providers]]
name = "local-mock"
kind = "openai"
base_url = "http://127.0.0.1:8090/v1"

[[models]]
name = "mock-small"
providers = ["local-mock"]
"#;

fn err(text: &str) -> String {
    Config::parse(text, "test.toml").unwrap_err().to_string()
}

#[test]
fn the_minimal_config_loads_with_defaults() {
    let c = Config::parse(GOOD, "test.toml").unwrap();
    assert_eq!(c.route("mock-small").unwrap().providers, ["local-mock"]);
    assert_eq!(c.worker.max_batch_size, 32);
    assert_eq!(c.worker.prefetch(), 256);
    assert_eq!(c.jobs.retention_s, 86_400);
    assert_eq!(c.jobs.pack_jobs, 16);
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let e = err(&format!("{GOOD}\n[worker]\nmax_batch = 3\n"));
    assert!(e.contains("test.toml"), "{e}");
    assert!(e.contains("unknown field `max_batch`"), "{e}");
    assert!(e.contains("line 12"), "{e}");
}

#[test]
fn a_route_to_an_unknown_provider_is_refused() {
    let e = err(&GOOD.replace(r#"providers = ["local-mock"]"#, r#"providers = ["nope"]"#));
    assert!(
        e.contains(r#"models[0] ("mock-small"): unknown provider "nope""#),
        "{e}"
    );
    assert!(e.contains("local-mock"), "{e}");
}

#[test]
fn a_bad_url_is_refused() {
    let e = err(&GOOD.replace("http://127.0.0.1:8090/v1", "not a url"));
    assert!(e.contains("base_url"), "{e}");
    let e = err(&GOOD.replace("http://127.0.0.1:8090/v1", "ftp://x/v1"));
    assert!(
        e.contains(r#"providers[0] ("local-mock"): base_url"#),
        "{e}"
    );
}

#[test]
fn prices_are_read_and_must_name_a_provider() {
    let text = format!(
        "{GOOD}\n[[prices]]\nprovider = \"local-mock\"\nmodel = \"mock-small\"\ninput = 150000\ncached_input = 75000\noutput = 600000\n"
    );
    let c = Config::parse(&text, "test.toml").unwrap();
    let p = c.price("local-mock", "mock-small").unwrap().standard;
    assert_eq!(
        (p.input, p.cached_input, p.output, p.cache_write),
        (150_000, 75_000, 600_000, None)
    );
    assert!(c.price("local-mock", "other").is_none());
    let e = err(&text.replace(
        "provider = \"local-mock\"\nmodel",
        "provider = \"x\"\nmodel",
    ));
    assert!(
        e.contains("prices[0]") && e.contains("unknown provider"),
        "{e}"
    );
    let e = err(&text.replace("cached_input = 75000", "cached_input = 75000\ncahced = 1"));
    assert!(e.contains("cahced"), "{e}");
    let e = err(&text.replace("output = 600000", "output = 1.5"));
    assert!(e.contains("output") || e.contains("invalid type"), "{e}");
}

#[test]
fn duplicates_and_empty_routes_are_refused() {
    let e = err(&format!(
        "{GOOD}\n[[models]]\nname = \"mock-small\"\nproviders = [\"local-mock\"]\n"
    ));
    assert!(e.contains("already routed"), "{e}");
    let e = err(&GOOD.replace(r#"providers = ["local-mock"]"#, "providers = []"));
    assert!(e.contains("providers is empty"), "{e}");
}

#[test]
fn pack_jobs_is_read_and_bounded() {
    let c = Config::parse(&format!("{GOOD}\n[jobs]\npack_jobs = 1\n"), "test.toml").unwrap();
    assert_eq!(c.jobs.pack_jobs, 1);
    for bad in [0, 1001] {
        let e = err(&format!("{GOOD}\n[jobs]\npack_jobs = {bad}\n"));
        assert!(
            e.contains("jobs: pack_jobs must be between 1 and 1000"),
            "{e}"
        );
    }
}

#[test]
fn webhooks_default_to_the_standard_schedule_and_check_the_allowlist() {
    let c = Config::parse(GOOD, "test.toml").unwrap();
    assert_eq!(
        c.webhooks.schedule_s,
        [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    );
    assert_eq!(
        c.webhooks.delays_ms(),
        [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]
    );
    let c = Config::parse(
        &format!("{GOOD}\n[webhooks]\nschedule_s = [0, 0.2, 1]\nallow = [\"127.0.0.0/8\"]\n"),
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.webhooks.delays_ms(), [200, 1000]);
    let e = err(&format!("{GOOD}\n[webhooks]\nallow = [\"10.0.0.0/40\"]\n"));
    assert!(e.contains("webhooks: allow[0]"), "{e}");
    let e = err(&format!("{GOOD}\n[webhooks]\nschedule_s = []\n"));
    assert!(e.contains("schedule_s"), "{e}");
}

#[test]
fn tier_prices_are_read_and_default_to_half() {
    let line = "[[prices]]\nprovider = \"local-mock\"\nmodel = \"mock-small\"\ninput = 150000\ncached_input = 75000\noutput = 600000\n";
    let c = Config::parse(&format!("{GOOD}\n{line}"), "test.toml").unwrap();
    let p = c.price("local-mock", "mock-small").unwrap();
    assert_eq!((p.flex.input, p.batch.output), (75_000, 300_000));
    let given = format!("{GOOD}\n{line}flex = {{ input = 1, cached_input = 2, output = 3 }}\n");
    let p = Config::parse(&given, "test.toml")
        .unwrap()
        .price("local-mock", "mock-small")
        .unwrap();
    assert_eq!((p.flex.input, p.flex.output, p.batch.input), (1, 3, 75_000));
    let e = err(&given.replace("cached_input = 2", "cahced = 2"));
    assert!(e.contains("cahced") || e.contains("cached_input"), "{e}");
    let e = err(&format!(
        "{GOOD}\n{}batch = {{ input = 1, cached_input = 1, output = 1 }}\n",
        line.replace("\"local-mock\"", "\"nope\"")
    ));
    assert!(e.contains("prices[0]") && e.contains("tier's price"), "{e}");
}

#[test]
fn flex_is_read_checked_and_only_for_openai_providers() {
    let flex = GOOD.replace(
        "[[models]]",
        "[providers.flex]\nmodels = [\"mock-small\"]\nmin_deadline_s = 900\n\n[[models]]",
    );
    let c = Config::parse(&flex, "test.toml").unwrap();
    let f = c.providers[0].flex.as_ref().unwrap();
    assert_eq!((f.min_deadline_s, f.timeout_s), (900, 900));
    let e = err(&flex.replace("min_deadline_s = 900", "min_deadline_s = 100"));
    assert!(
        e.contains("providers[0]") && e.contains("realtime_margin_s"),
        "{e}"
    );
    let e = err(&flex.replace("kind = \"openai\"", "kind = \"anthropic\""));
    assert!(e.contains("flex"), "{e}");
}

#[test]
fn provider_batches_are_read_and_checked_with_their_location() {
    let batch = GOOD.replace(
        "[[models]]",
        "[providers.batch]\nmin_deadline_s = 7200\nmax_lines = 500\n\n[[models]]",
    );
    let c = Config::parse(&batch, "test.toml").unwrap();
    let b = c.providers[0].batch.as_ref().unwrap();
    assert_eq!(
        (b.min_deadline_s, b.max_lines, b.realtime_margin_s),
        (7200, 500, 900)
    );
    let e = err(&batch.replace("min_deadline_s = 7200", "min_deadline_s = 600"));
    assert!(
        e.contains("providers[0]") && e.contains("batch.min_deadline_s"),
        "{e}"
    );
    let e = err(&batch.replace("max_lines = 500", "max_lines = 0"));
    assert!(e.contains("batch.max_lines"), "{e}");
    let e = err(&batch.replace("max_lines = 500", "max_line = 500"));
    assert!(e.contains("max_line"), "{e}");
}

#[test]
fn a_judge_model_needs_a_route_an_embedder_and_its_measured_error() {
    let judged = |extra: &str| {
        format!("{GOOD}\n[cache.semantic]\nmodel = \"mock-small\"\njudge_model = \"mock-small\"\n{extra}")
    };
    let c = Config::parse(&judged("judge_error = 0.005"), "test.toml").unwrap();
    assert_eq!(c.cache.semantic.judge_model.as_deref(), Some("mock-small"));
    assert_eq!(c.cache.semantic.judge_error, Some(0.005));

    let e = err(&judged(""));
    assert!(e.contains("judge_model needs judge_error"), "{e}");
    let e = err(&judged("judge_error = 1.5"));
    assert!(e.contains("judge_error must be in [0, 1)"), "{e}");
    let e = err(&judged("judge_error = 0.01")
        .replace("judge_model = \"mock-small\"", "judge_model = \"nope\""));
    assert!(
        e.contains(r#"judge_model "nope" has no [[models]] route"#),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}\n[cache.semantic]\njudge_model = \"mock-small\"\njudge_error = 0.01\n"
    ));
    assert!(e.contains("no model embeds"), "{e}");
}

#[test]
fn a_lexicon_needs_an_embedder_and_word_vectors_stay_on_unless_turned_off() {
    let c = Config::parse(
        &format!(
            "{GOOD}\n[cache.semantic]\nmodel = \"mock-small\"\nlexicon = \"/usr/share/wordnet\"\n"
        ),
        "test.toml",
    )
    .unwrap();
    let s = &c.cache.semantic;
    assert_eq!(
        s.lexicon.as_deref(),
        Some(std::path::Path::new("/usr/share/wordnet"))
    );
    assert!(s.word_vectors, "on by default");
    let c = Config::parse(
        &format!("{GOOD}\n[cache.semantic]\nmodel = \"mock-small\"\nword_vectors = false\n"),
        "test.toml",
    )
    .unwrap();
    assert!(!c.cache.semantic.word_vectors);
    let e = err(&format!(
        "{GOOD}\n[cache.semantic]\nlexicon = \"/usr/share/wordnet\"\n"
    ));
    assert!(e.contains("lexicon is set but no model embeds"), "{e}");
}
