use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use sluice_core::batching::BatchKey;
use sluice_core::Endpoint;
use sluice_queue::{Delivery, QueueError, Settle, Settlement};
use sluice_store::fair::MemoryFairStore;

use sluice_core::fair::Share;
use sluice_core::JobMessage;

use super::state::State;
use super::*;

/// Where a test's deliveries report how they were settled.
#[derive(Clone, Default)]
struct Settles(Arc<Mutex<Vec<(JobId, Settlement)>>>);

struct Recorded {
    id: JobId,
    settles: Settles,
}

#[async_trait]
impl Settle for Recorded {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        self.settles.0.lock().unwrap().push((self.id, how));
        Ok(())
    }
}

fn job(
    tenant: &str,
    key: &str,
    priority: Priority,
    share: Share,
    settles: &Settles,
) -> Incoming<Pending> {
    let mut message = JobMessage::new(
        JobId::new(),
        tenant,
        Endpoint::ChatCompletions,
        "m",
        json!({"messages": []}),
        chrono::Utc::now(),
    );
    message.priority = priority;
    message.key_id = Some(key.to_owned());
    message.share = share;
    let settle = Box::new(Recorded {
        id: message.id,
        settles: settles.clone(),
    });
    let key = BatchKey::of(&message, 0);
    Incoming {
        key,
        tokens: 100,
        max_wait: Duration::from_millis(5),
        item: Pending::new(message, Delivery::detached(Bytes::new(), settle)),
    }
}

fn config(enabled: bool, window: usize) -> GateConfig {
    GateConfig {
        enabled,
        window,
        batch_size: 1,
        lease: Duration::from_secs(60),
        completion_weights: HashMap::new(),
    }
}

/// Pushes `n` standard jobs of `tenant` (key `k` + tenant), default share.
fn push_standard(state: &mut State, tenant: &str, n: usize, settles: &Settles) {
    let key = format!("k{tenant}");
    for _ in 0..n {
        state.push(job(
            tenant,
            &key,
            Priority::Standard,
            Share::default(),
            settles,
        ));
    }
}

/// Passes on the next job, as the actor does (no caps here); answers its tenant.
fn next(state: &mut State) -> Option<(JobId, String)> {
    let (class, flow) = state.pick(Instant::now())?;
    let (held, _) = state.take(class, &flow)?;
    state.passing(class, &held.incoming);
    let m = &held.incoming.item.message;
    Some((m.id, m.tenant_id.clone()))
}

/// Passes on `n` jobs one at a time, each ending before the next goes.
fn serve(state: &mut State, n: usize) -> Vec<String> {
    (0..n)
        .filter_map(|_| {
            let (id, tenant) = next(state)?;
            state.ended(id, 0);
            Some(tenant)
        })
        .collect()
}

#[test]
fn a_tenant_arriving_behind_a_flood_is_served_next_not_after_it() {
    let settles = Settles::default();
    let mut state = State::new(config(true, 1));
    push_standard(&mut state, "a", 50, &settles);
    assert_eq!(serve(&mut state, 3), ["a", "a", "a"]);
    push_standard(&mut state, "b", 3, &settles);
    // b starts level with a (no credit for its idle time) and then they
    // alternate: b's three jobs go within the next six, not after 47.
    let order = serve(&mut state, 6);
    assert_eq!(order.iter().filter(|t| *t == "b").count(), 3, "{order:?}");
    // Alone again, a takes every turn (work-conserving).
    assert!(serve(&mut state, 10).iter().all(|t| t == "a"));
}

#[test]
fn weights_divide_the_turns_while_both_wait() {
    let settles = Settles::default();
    let mut state = State::new(config(true, 1));
    let double = Share {
        weight: Some(2),
        key_max_inflight: None,
    };
    for _ in 0..100 {
        state.push(job("a", "ka", Priority::Standard, double, &settles));
        state.push(job(
            "b",
            "kb",
            Priority::Standard,
            Share::default(),
            &settles,
        ));
    }
    let order = serve(&mut state, 60);
    let a = order.iter().filter(|t| *t == "a").count();
    assert!((39..=41).contains(&a), "a got {a} of 60 turns");
}

#[test]
fn a_higher_class_goes_first_and_off_the_oldest_job_goes_first() {
    let settles = Settles::default();
    let mut state = State::new(config(false, 1));
    for _ in 0..5 {
        state.push(job("a", "ka", Priority::Batch, Share::default(), &settles));
    }
    push_standard(&mut state, "a", 5, &settles);
    state.push(job(
        "b",
        "kb",
        Priority::Standard,
        Share::default(),
        &settles,
    ));
    state.push(job(
        "c",
        "kc",
        Priority::Interactive,
        Share::default(),
        &settles,
    ));
    // Fair share off: first come, first served within a class.
    let order = serve(&mut state, 12);
    assert_eq!(order[0], "c");
    assert_eq!(order[1..6], ["a", "a", "a", "a", "a"]);
    assert_eq!(order[6], "b");
}

#[test]
fn the_window_holds_jobs_until_calls_leave() {
    let settles = Settles::default();
    let mut state = State::new(config(true, 2));
    push_standard(&mut state, "a", 5, &settles);
    let (first, _) = next(&mut state).unwrap();
    next(&mut state).unwrap();
    assert!(
        state.pick(Instant::now()).is_none(),
        "two wait for a provider"
    );
    state.sent(&[first], Instant::now());
    assert!(next(&mut state).is_some(), "a call left: one more goes");
}

#[test]
fn the_window_counts_calls_so_jobs_that_share_an_array_call_count_a_fraction() {
    let settles = Settles::default();
    let mut state = State::new(GateConfig {
        batch_size: 4,
        ..config(true, 1)
    });
    for i in 0..6 {
        let mut embed = job("a", "ka", Priority::Standard, Share::default(), &settles);
        embed.item.message.endpoint = if i < 5 {
            Endpoint::Embeddings
        } else {
            Endpoint::ChatCompletions
        };
        state.push(embed);
    }
    let passed: Vec<JobId> = (0..4).map(|_| next(&mut state).unwrap().0).collect();
    assert!(state.pick(Instant::now()).is_none(), "four make one call");
    state.sent(&passed, Instant::now());
    next(&mut state).unwrap();
    // The chat job counts as a whole call: it goes while a quarter waits,
    // and nothing after it.
    next(&mut state).unwrap();
    assert!(state.pick(Instant::now()).is_none());
}

#[tokio::test]
async fn a_capped_key_never_has_more_jobs_passed_than_its_cap_and_others_go_past() {
    let settles = Settles::default();
    let store = Arc::new(MemoryFairStore::default());
    let (input_tx, input) = mpsc::channel(64);
    let (out, mut out_rx) = mpsc::channel(64);
    let tasks = TaskTracker::new();
    let (events, events_rx) = mpsc::unbounded_channel();
    let gate = Gate { events };
    let actor = Actor {
        state: State::new(config(true, 100)),
        store,
        metrics: Arc::new(Metrics::new()),
        out: Some(out),
        frees: HashMap::new(),
    };
    tasks.spawn(actor.run(input, events_rx));
    let capped = Share {
        weight: None,
        key_max_inflight: Some(2),
    };
    for _ in 0..5 {
        input_tx
            .send(job("a", "capped", Priority::Standard, capped, &settles))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        input_tx
            .send(job(
                "a",
                "free",
                Priority::Standard,
                Share::default(),
                &settles,
            ))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(out_rx.recv().await.unwrap().item.message);
    }
    let keys = |got: &[JobMessage], key: &str| {
        got.iter()
            .filter(|m| m.key_id.as_deref() == Some(key))
            .count()
    };
    assert_eq!((keys(&got, "capped"), keys(&got, "free")), (2, 2));
    let late = tokio::time::timeout(Duration::from_millis(300), out_rx.recv()).await;
    assert!(late.is_err(), "a third job of the capped key went on");
    // One of its jobs ends: one more may go.
    let ended = got
        .iter()
        .find(|m| m.key_id.as_deref() == Some("capped"))
        .unwrap();
    gate.ended(ended.id, 0);
    let third = out_rx.recv().await.unwrap().item.message;
    assert_eq!(third.key_id.as_deref(), Some("capped"));
    // Shutting down: the two jobs still held are given back, none lost.
    drop(input_tx);
    gate.close();
    tasks.close();
    tasks.wait().await;
    let given_back = settles.0.lock().unwrap().clone();
    assert_eq!(given_back.len(), 2, "{given_back:?}");
    assert!(given_back
        .iter()
        .all(|(_, how)| *how == Settlement::Requeue));
}
