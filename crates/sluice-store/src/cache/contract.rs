//! The behaviour every response cache must have, run against the
//! in-memory cache and the real Redis (a unique prefix, deleted after).

use std::time::Duration;

use serde_json::json;
use sluice_core::{Endpoint, JobId, JobMessage, Usage};

use super::*;
use crate::jobs::{RedisJobStore, RedisOptions};

const TTL: Duration = Duration::from_secs(60);

fn entry(tenant: &str, model: &str, key: &str) -> EntryKey {
    EntryKey {
        tenant: tenant.into(),
        model: model.into(),
        key: key.into(),
    }
}

fn answer(text: &str) -> CachedAnswer {
    CachedAnswer {
        job: JobId::new(),
        result: json!({"choices": [{"message": {"content": text}}]}),
        usage: Usage::new(12, 3, 0),
        provider: "p".into(),
        cost_micros: 42,
    }
}

fn message() -> JobMessage {
    let body = json!({"model": "m", "messages": []});
    JobMessage::new(
        JobId::new(),
        "t",
        Endpoint::ChatCompletions,
        "m",
        body,
        chrono::Utc::now(),
    )
}

async fn entries_are_per_tenant_and_model_and_clear(cache: &dyn ResponseCache) {
    let a = entry("t1", "m", "k");
    cache.put(&a, &answer("x"), TTL).await.unwrap();
    assert_eq!(
        cache.get(&a).await.unwrap(),
        Some(answer_with(&a, cache).await)
    );
    assert_eq!(cache.get(&entry("t2", "m", "k")).await.unwrap(), None);
    cache
        .put(&entry("t1", "m2", "k2"), &answer("y"), TTL)
        .await
        .unwrap();
    cache
        .put(&entry("t2", "m", "k"), &answer("z"), TTL)
        .await
        .unwrap();
    assert_eq!(cache.clear("t1", Some("m")).await.unwrap(), 1);
    assert_eq!(cache.get(&a).await.unwrap(), None);
    assert!(cache.get(&entry("t1", "m2", "k2")).await.unwrap().is_some());
    assert_eq!(cache.clear("t1", None).await.unwrap(), 1);
    assert!(
        cache.get(&entry("t2", "m", "k")).await.unwrap().is_some(),
        "other tenant kept"
    );
}

async fn answer_with(e: &EntryKey, cache: &dyn ResponseCache) -> CachedAnswer {
    cache.get(e).await.unwrap().unwrap()
}

async fn followers_join_only_a_live_leader(cache: &dyn ResponseCache) {
    let e = entry("t", "m", "same");
    let (leader, other) = (JobId::new(), JobId::new());
    assert_eq!(cache.claim(&e, leader, TTL).await.unwrap(), Claim::Leader);
    assert_eq!(
        cache.claim(&e, other, TTL).await.unwrap(),
        Claim::Pending(leader)
    );
    let follower = message();
    assert!(
        !cache.follow(&e, leader, &follower, TTL).await.unwrap(),
        "not live yet"
    );
    assert!(
        !cache.confirm(&e, other, TTL).await.unwrap(),
        "not its claim"
    );
    assert!(cache.confirm(&e, leader, TTL).await.unwrap());
    assert_eq!(
        cache.claim(&e, other, TTL).await.unwrap(),
        Claim::Live(leader)
    );
    assert!(cache.follow(&e, leader, &follower, TTL).await.unwrap());
    let second = message();
    assert!(cache.follow(&e, leader, &second, TTL).await.unwrap());

    assert_eq!(
        cache.close(&e, leader).await.unwrap(),
        vec![follower.clone(), second.clone()]
    );
    assert!(
        !cache.follow(&e, leader, &message(), TTL).await.unwrap(),
        "closed"
    );
    // A redelivered leader finds the same followers.
    assert_eq!(cache.close(&e, leader).await.unwrap().len(), 2);
    // The key is free for the next request.
    assert_eq!(cache.claim(&e, other, TTL).await.unwrap(), Claim::Leader);
    cache.abandon(&e, other).await.unwrap();
    assert_eq!(cache.claim(&e, leader, TTL).await.unwrap(), Claim::Leader);
}

/// A leader's worker may answer before the API marked its claim live: the
/// claim ends with it, and is not made live after, so no identical request
/// follows a leader that already ended.
async fn a_leader_that_ends_before_its_claim_is_live_leaves_no_claim(cache: &dyn ResponseCache) {
    let e = entry("t", "m", "raced");
    let (leader, next) = (JobId::new(), JobId::new());
    assert_eq!(cache.claim(&e, leader, TTL).await.unwrap(), Claim::Leader);
    assert!(cache.close(&e, leader).await.unwrap().is_empty());
    assert!(
        !cache.confirm(&e, leader, TTL).await.unwrap(),
        "an ended leader's claim is not made live"
    );
    assert!(!cache.follow(&e, leader, &message(), TTL).await.unwrap());
    assert_eq!(cache.claim(&e, next, TTL).await.unwrap(), Claim::Leader);
}

async fn vectors_are_found_by_bucket_once_answered(cache: &dyn ResponseCache) {
    let scope = SemanticScope {
        tenant: "t".into(),
        model: "m".into(),
        scope: "s".into(),
    };
    let job = JobId::new();
    let buckets = vec!["0:a".to_owned(), "1:b".to_owned()];
    cache
        .file_vector(&scope, job, &[0.6, 0.8], "Near?", &buckets, TTL)
        .await
        .unwrap();
    assert!(
        cache
            .candidates(&scope, &buckets, 8)
            .await
            .unwrap()
            .is_empty(),
        "no answer yet"
    );
    let a = answer("near");
    cache.answer_vector(&scope, job, &a, TTL).await.unwrap();
    let found = cache
        .candidates(&scope, &["1:b".to_owned(), "2:z".to_owned()], 8)
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![Candidate {
            vector: vec![0.6, 0.8],
            text: "Near?".into(),
            answer: a
        }]
    );
    assert!(cache
        .candidates(&scope, &["0:c".to_owned()], 8)
        .await
        .unwrap()
        .is_empty());
    let other = SemanticScope {
        tenant: "u".into(),
        ..scope.clone()
    };
    assert!(cache
        .candidates(&other, &buckets, 8)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(cache.clear("t", Some("m")).await.unwrap(), 1);
    assert!(cache
        .candidates(&scope, &buckets, 8)
        .await
        .unwrap()
        .is_empty());
}

/// More neighbours than a lookup compares: those sharing the most buckets
/// come first, the newest first among equals, never an arbitrary subset.
async fn the_neighbours_sharing_most_buckets_come_first(cache: &dyn ResponseCache) {
    let scope = SemanticScope {
        tenant: "crowded".into(),
        model: "m".into(),
        scope: "s".into(),
    };
    let query: Vec<String> = ["0:a", "1:b", "2:c"].map(String::from).to_vec();
    // (text, its buckets), filed in this order: ids grow with it.
    let filed = [
        ("one band, older", vec!["0:a"]),
        ("all three", vec!["0:a", "1:b", "2:c"]),
        ("one band, newer", vec!["2:c"]),
        ("two bands", vec!["0:a", "1:b"]),
        ("none of them", vec!["9:z"]),
    ];
    for (text, buckets) in filed {
        let job = JobId::new();
        let buckets: Vec<String> = buckets.into_iter().map(String::from).collect();
        cache
            .file_vector(&scope, job, &[1.0, 0.0], text, &buckets, TTL)
            .await
            .unwrap();
        cache
            .answer_vector(&scope, job, &answer(text), TTL)
            .await
            .unwrap();
    }
    let texts =
        |found: Vec<Candidate>| -> Vec<String> { found.into_iter().map(|c| c.text).collect() };
    let all = cache.candidates(&scope, &query, 8).await.unwrap();
    assert_eq!(
        texts(all),
        [
            "all three",
            "two bands",
            "one band, newer",
            "one band, older"
        ]
    );
    let few = cache.candidates(&scope, &query, 3).await.unwrap();
    assert_eq!(texts(few), ["all three", "two bands", "one band, newer"]);
    cache.clear("crowded", None).await.unwrap();
}

async fn samples_are_per_tenant_newest_first_and_bounded(cache: &dyn ResponseCache) {
    let sample = |n: usize| SemanticSample {
        job: JobId::new(),
        source_job: JobId::new(),
        similarity: 0.9,
        word_similarity: Some(1.0),
        verified_by: Some(sluice_core::cache::VerifiedBy::Words),
        expected_error: 0.05,
        question: format!("q{n}"),
        cached_question: "c".into(),
        served_at: chrono::Utc::now(),
    };
    let tenant = format!("t-{}", JobId::new());
    assert!(cache.samples(&tenant, 10).await.unwrap().is_empty());
    for n in 0..SAMPLES_KEPT + 3 {
        cache.add_sample(&tenant, &sample(n)).await.unwrap();
    }
    let all = cache.samples(&tenant, SAMPLES_KEPT + 10).await.unwrap();
    assert_eq!(all.len(), SAMPLES_KEPT, "bounded");
    assert_eq!(
        all[0].question,
        format!("q{}", SAMPLES_KEPT + 2),
        "newest first"
    );
    let few = cache.samples(&tenant, 2).await.unwrap();
    assert_eq!(few, all[..2]);
    assert!(cache.samples("another", 10).await.unwrap().is_empty());
}

async fn run_all(cache: &dyn ResponseCache) {
    entries_are_per_tenant_and_model_and_clear(cache).await;
    followers_join_only_a_live_leader(cache).await;
    a_leader_that_ends_before_its_claim_is_live_leaves_no_claim(cache).await;
    vectors_are_found_by_bucket_once_answered(cache).await;
    the_neighbours_sharing_most_buckets_come_first(cache).await;
    samples_are_per_tenant_newest_first_and_bounded(cache).await;
}

#[tokio::test]
async fn memory_cache_keeps_the_contract() {
    run_all(&MemoryCache::new()).await;
}

#[tokio::test]
async fn redis_cache_keeps_the_contract() {
    let prefix = format!("test-{}", JobId::new().to_string().to_lowercase());
    let store = RedisJobStore::connect(RedisOptions {
        url: std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        prefix,
        retention: Duration::from_secs(60),
        pool_size: 2,
    })
    .await
    .expect("redis at SLUICE_REDIS_URL or 127.0.0.1:6379");
    run_all(&store.cache()).await;
    store.delete_all().await.unwrap();
    store.close().await;
}
