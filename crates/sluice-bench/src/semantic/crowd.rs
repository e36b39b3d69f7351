//! A crowded scope (`--crowd N`): what a semantic lookup costs Redis when
//! one scope holds N questions, with the buckets' planes through the
//! origin and through the embedder's centre ([`Lsh::centred`], Sluice's).
//!
//! N generated questions of one kind ("How do I descale my espresso
//! machine before winter?") are embedded by the real embedding server and
//! filed, answered, in a scope of the real Redis store; then rewordings of
//! some of them ("Could you explain how to descale my espresso machine
//! before winter?") look the scope up as the API does (`candidates`, at
//! most `max_candidates`). Reported per variant: how many entries a
//! lookup's buckets hold (what the store's script reads and ranks), the
//! time of the store call, and how often the scope's nearest entry, when
//! it is at or above the threshold, is among the candidates returned. The
//! scope is deleted afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use sluice_core::cache::lsh::{self, cosine, Lsh};
use sluice_core::cache::{CachedAnswer, SemanticConfig};
use sluice_core::{JobId, Usage};
use sluice_store::cache::{ResponseCache, SemanticScope};
use sluice_store::jobs::{RedisJobStore, RedisOptions};
use sluice_testkit::Embedder;

use crate::cli::Connections;
use crate::progress::{self, Size};
use crate::stats::percentile;

/// Texts per embedding call.
const BATCH: usize = 64;

/// Lookups per variant.
const LOOKUPS: usize = 230;

/// How the generated questions open.
const OPENERS: [&str; 4] = [
    "How do I",
    "What is the best way to",
    "Can you tell me how to",
    "Is it possible to",
];

/// One variant's figures.
pub struct CrowdRow {
    pub centred: bool,
    /// Entries in a lookup's buckets, counted once per bucket (what the
    /// script reads), as a share of the scope: mean.
    pub read_share: f64,
    /// The store call's time, p50 and p99.
    pub call_ms: (f64, f64),
    /// Lookups whose nearest entry in the scope is at or above the
    /// threshold, and of them those that found it among the candidates.
    pub near: usize,
    pub nearest_found: usize,
}

/// N questions of one kind, none of them a probe's: an action on a
/// household product, in a circumstance (at most 20 × 25 × 20 = 10,000).
pub fn questions(n: usize) -> Vec<String> {
    const ACTIONS: [&str; 20] = [
        "clean",
        "assemble",
        "replace the battery of",
        "pair",
        "update the firmware of",
        "reset",
        "wash",
        "store",
        "charge",
        "mount",
        "calibrate",
        "unlock",
        "register",
        "insure",
        "repair",
        "paint",
        "fold",
        "adjust",
        "sharpen",
        "descale",
    ];
    const THINGS: [&str; 25] = [
        "yoga mat",
        "garden hose",
        "espresso machine",
        "electric toothbrush",
        "standing desk",
        "baby stroller",
        "camping tent",
        "robot vacuum",
        "air fryer",
        "smart thermostat",
        "road bike",
        "kayak",
        "sewing machine",
        "drone",
        "dishwasher",
        "ceiling fan",
        "office chair",
        "aquarium filter",
        "lawn mower",
        "pressure cooker",
        "treadmill",
        "guitar amp",
        "smoke detector",
        "car seat",
        "water heater",
    ];
    const WHEN: [&str; 20] = [
        "at home",
        "without tools",
        "after moving house",
        "before winter",
        "in a small apartment",
        "for the first time",
        "when it is still under warranty",
        "if the manual is lost",
        "on a weekend",
        "with a friend",
        "safely",
        "quickly",
        "every month",
        "when it makes a noise",
        "after a power cut",
        "in cold weather",
        "without an app",
        "for a child",
        "on a budget",
        "step by step",
    ];
    let all = ACTIONS.len() * THINGS.len() * WHEN.len();
    // A stride coprime with the count walks every combination once, so
    // the first n mix all actions, things and circumstances.
    let stride = 7_919;
    (0..n.min(all))
        .map(|i| {
            let k = (i * stride) % all;
            let (a, rest) = (k % ACTIONS.len(), k / ACTIONS.len());
            let (t, w) = (rest % THINGS.len(), rest / THINGS.len());
            let opener = OPENERS[(a + t + w) % OPENERS.len()];
            format!("{opener} {} my {} {}?", ACTIONS[a], THINGS[t], WHEN[w])
        })
        .collect()
}

/// [`LOOKUPS`] of `filed`, spread over them, asked another way.
fn rewordings(filed: &[String]) -> Vec<String> {
    let step = (filed.len() / LOOKUPS).max(1);
    filed
        .iter()
        .step_by(step)
        .take(LOOKUPS)
        .filter_map(|q| {
            let rest = OPENERS.iter().find_map(|o| q.strip_prefix(o))?;
            let rest = rest.trim().trim_end_matches('?');
            Some(format!("Could you explain how to {rest}?"))
        })
        .collect()
}

/// Files `n` generated questions in a fresh scope for each variant and
/// looks rewordings of some of them up in it.
pub async fn measure(
    conn: &Connections,
    embedder: &Embedder,
    model: &str,
    n: usize,
) -> anyhow::Result<Vec<CrowdRow>> {
    let filed = questions(n);
    let asked = rewordings(&filed);
    anyhow::ensure!(
        filed.len() == n,
        "--crowd is at most {} questions",
        questions(usize::MAX).len()
    );
    let http = reqwest::Client::new();
    let phase = progress::phase(
        format!("embedding {n} crowd questions"),
        Size::Items((n + asked.len()) as u64),
    );
    let filed_vectors = embed(&http, embedder, &filed, &phase).await?;
    let asked_vectors = embed(&http, embedder, &asked, &phase).await?;
    let reference = embed(&http, embedder, &lsh::reference_texts(), &phase).await?;
    phase.done();
    let config = SemanticConfig::default();
    let dims = reference.first().map_or(0, Vec::len);
    let mut rows = Vec::new();
    for centred in [false, true] {
        let planes = Lsh::new(config.seed, config.bands, config.bits_per_band, dims);
        let planes = if centred {
            planes.centred(&reference)
        } else {
            planes
        };
        rows.push(
            one_scope(
                conn,
                &planes,
                centred,
                model,
                (&filed, &filed_vectors),
                &asked_vectors,
                &config,
            )
            .await?,
        );
    }
    Ok(rows)
}

async fn one_scope(
    conn: &Connections,
    planes: &Lsh,
    centred: bool,
    model: &str,
    (filed, vectors): (&[String], &[Vec<f32>]),
    asked: &[Vec<f32>],
    config: &SemanticConfig,
) -> anyhow::Result<CrowdRow> {
    let store = RedisJobStore::connect(RedisOptions {
        url: conn.redis_url.clone(),
        prefix: format!("bench-crowd-{}", JobId::new()),
        retention: Duration::from_secs(3_600),
        pool_size: 4,
    })
    .await
    .context("cannot connect to Redis")?;
    let cache = store.cache();
    let scope = SemanticScope {
        tenant: "crowd".to_owned(),
        model: model.to_owned(),
        scope: "support".to_owned(),
    };
    let outcome = fill_and_ask(
        &cache,
        &scope,
        planes,
        centred,
        (filed, vectors),
        asked,
        config,
    )
    .await;
    cache
        .clear(&scope.tenant, None)
        .await
        .context("cannot delete the crowd's scope")?;
    outcome
}

async fn fill_and_ask(
    cache: &dyn ResponseCache,
    scope: &SemanticScope,
    planes: &Lsh,
    centred: bool,
    (filed, vectors): (&[String], &[Vec<f32>]),
    asked: &[Vec<f32>],
    config: &SemanticConfig,
) -> anyhow::Result<CrowdRow> {
    let label = if centred {
        "centred"
    } else {
        "through the origin"
    };
    let phase = progress::phase(
        format!("filing {} questions, planes {label}", filed.len()),
        Size::Items(filed.len() as u64),
    );
    let ttl = Duration::from_secs(3_600);
    let mut buckets_of = Vec::with_capacity(filed.len());
    let mut ids = Vec::with_capacity(filed.len());
    for (text, vector) in filed.iter().zip(vectors) {
        let job = JobId::new();
        let buckets = planes.buckets(vector);
        cache
            .file_vector(scope, job, vector, text, &buckets, ttl)
            .await?;
        let answer = CachedAnswer {
            job,
            result: json!({"answer": text}),
            usage: Usage::default(),
            provider: "crowd".to_owned(),
            cost_micros: 0,
        };
        cache.answer_vector(scope, job, &answer, ttl).await?;
        buckets_of.push(buckets);
        ids.push(job);
        phase.inc(1);
    }
    phase.done();
    let mut times = Vec::with_capacity(asked.len());
    let (mut read, mut near, mut nearest_found) = (0usize, 0usize, 0usize);
    for vector in asked {
        let buckets = planes.buckets(vector);
        read += buckets_of
            .iter()
            .map(|b| b.iter().zip(&buckets).filter(|(x, y)| x == y).count())
            .sum::<usize>();
        let nearest = vectors
            .iter()
            .zip(&ids)
            .map(|(v, id)| (cosine(vector, v), *id))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(similarity, _)| *similarity >= config.threshold)
            .map(|(_, id)| id);
        let started = Instant::now();
        let candidates = cache
            .candidates(scope, &buckets, config.max_candidates)
            .await?;
        times.push(started.elapsed());
        if let Some(nearest) = nearest {
            near += 1;
            if candidates.iter().any(|c| c.answer.job == nearest) {
                nearest_found += 1;
            }
        }
    }
    times.sort();
    let ms = |q| percentile(&times, q);
    Ok(CrowdRow {
        centred,
        read_share: read as f64 / (asked.len() * filed.len()).max(1) as f64,
        call_ms: (ms(0.50), ms(0.99)),
        near,
        nearest_found,
    })
}

/// The crowd's table, in Markdown.
pub fn report(n: usize, rows: &[CrowdRow]) -> String {
    let defaults = SemanticConfig::default();
    let mut out = format!(
        "\n### A crowded scope: {n} questions\n\n\
         {n} generated questions filed in one scope of the real Redis; 230 of them \
         asked another way ({bands} bands of {bits} bits, at most {max} candidates; \
         the nearest entry counted when at or above {threshold})\n\n\
         | planes | a lookup's buckets hold (of the scope) | store call p50 / p99 | \
         nearest entry among the candidates |\n|---|---|---|---|\n",
        bands = defaults.bands,
        bits = defaults.bits_per_band,
        max = defaults.max_candidates,
        threshold = defaults.threshold,
    );
    for r in rows {
        out.push_str(&format!(
            "| {planes} | {read:.2} × | {p50:.1} / {p99:.1} ms | {found} of {all} |\n",
            planes = if r.centred {
                "centred (Sluice's)"
            } else {
                "through the origin"
            },
            read = r.read_share,
            p50 = r.call_ms.0,
            p99 = r.call_ms.1,
            found = r.nearest_found,
            all = r.near,
        ));
    }
    out
}

/// The server's vectors of `texts`, in order, [`BATCH`] per call.
async fn embed(
    http: &reqwest::Client,
    embedder: &Embedder,
    texts: &[String],
    phase: &progress::Phase,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let url = format!("{}/embeddings", embedder.base_url());
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let answer: Value = http
            .post(&url)
            .json(&json!({"model": "e5", "input": chunk}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for i in 0..chunk.len() {
            let vector: Vec<f32> = answer
                .pointer(&format!("/data/{i}/embedding"))
                .and_then(Value::as_array)
                .context("an embedding answer without its vector")?
                .iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect();
            out.push(vector);
        }
        phase.inc(chunk.len() as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crowd_is_distinct_questions_of_every_action_and_thing() {
        let all = questions(usize::MAX);
        assert_eq!(all.len(), 10_000);
        let distinct: std::collections::HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        let first = questions(500);
        assert_eq!(first[..], all[..500]);
        assert!(first.iter().any(|q| q.contains("descale")));
        assert!(first.iter().any(|q| q.contains("kayak")));
    }

    #[test]
    fn a_rewording_keeps_the_question_and_changes_its_opening() {
        let filed = questions(1_000);
        let asked = rewordings(&filed);
        assert_eq!(asked.len(), LOOKUPS);
        let first = filed[0].split_once(" my ").map(|(_, rest)| rest);
        assert!(asked[0].starts_with("Could you explain how to "));
        assert!(
            asked[0].ends_with(first.unwrap_or("?")),
            "{} / {}",
            asked[0],
            filed[0]
        );
        assert!(!filed.contains(&asked[0]));
    }
}
