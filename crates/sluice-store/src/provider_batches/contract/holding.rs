//! The contract's scenarios about holding batches: claims, leases, the
//! holder's writes, and what they change.

use std::collections::HashSet;

use super::*;

pub async fn two_owners_never_claim_the_same_batch(store: &dyn ProviderBatchStore) {
    let t = target("p", "m");
    let made = append(store, &t, &lines(12, 10), most(1), t0()).await;
    let a = store.claim("a", LONG, 5, t0()).await.unwrap();
    let b = store.claim("b", LONG, 5, t0()).await.unwrap();
    assert_eq!(
        (batch_ids(&a), batch_ids(&b)),
        (made[..5].to_vec(), made[5..10].to_vec())
    );
    // A holder claiming again gets what it holds back first.
    let again = store.claim("a", LONG, 5, t0()).await.unwrap();
    assert_eq!(batch_ids(&again), made[..5]);
    let mut all: HashSet<String> = made.into_iter().collect();
    for _ in 0..10 {
        all.extend(append(store, &t, &lines(6, 10), most(1), t0()).await);
        let (a, b) = futures::join!(claim_ids(store, "a", t0()), claim_ids(store, "b", t0()));
        let (a, b): (HashSet<String>, HashSet<String>) =
            (a.into_iter().collect(), b.into_iter().collect());
        assert!(a.is_disjoint(&b));
        assert_eq!(a.union(&b).cloned().collect::<HashSet<_>>(), all);
    }
}

pub async fn a_lease_that_ran_out_is_taken_over(store: &dyn ProviderBatchStore) {
    let new = lines(3, 10);
    let made = append(store, &target("p", "m"), &new, most(3), t0()).await;
    let id = &made[0];
    assert_eq!(claim(store, "a", LEASE, t0()).await.len(), 1);
    assert!(claim(store, "b", LEASE, at(59)).await.is_empty());
    // Claiming again renews the holder's lease: now until 110 s.
    assert_eq!(claim(store, "a", LEASE, at(50)).await.len(), 1);
    assert!(claim(store, "b", LEASE, at(109)).await.is_empty());
    let taken = claim(store, "b", LEASE, at(110)).await;
    assert_eq!(batch_ids(&taken), made);
    // The old holder's writes answer false and change nothing.
    assert_eq!(store.begin_submit(id, "a").await.unwrap(), None);
    assert!(!store.submitted(id, "a", "remote", at(111)).await.unwrap());
    assert!(!store.rerouted(id, "a", &ids(&new), true).await.unwrap());
    assert!(!store.finish(id, "a", at(111)).await.unwrap());
    assert!(claim(store, "a", LEASE, at(111)).await.is_empty());
    assert_eq!(claim(store, "b", LEASE, at(112)).await, taken);
    let submitting = store.begin_submit(id, "b").await.unwrap().unwrap();
    assert_eq!(jobs(&submitting), ids(&new));
}

pub async fn a_renewed_lease_is_not_taken_over(store: &dyn ProviderBatchStore) {
    let made = append(store, &target("p", "m"), &lines(2, 10), most(1), t0()).await;
    assert_eq!(made.len(), 2);
    assert_eq!(claim(store, "a", LEASE, t0()).await.len(), 2);
    // A long step renews every lease "a" holds, without claiming more.
    assert_eq!(store.renew("a", LEASE, at(50)).await.unwrap(), 2);
    assert_eq!(store.renew("b", LEASE, at(50)).await.unwrap(), 0);
    assert!(claim(store, "b", LEASE, at(109)).await.is_empty());
    assert_eq!(claim(store, "b", LEASE, at(110)).await.len(), 2);
    // Renewing what another took over renews nothing.
    assert_eq!(store.renew("a", LEASE, at(111)).await.unwrap(), 0);
}

pub async fn rerouted_and_settled_jobs_change_what_claim_returns(store: &dyn ProviderBatchStore) {
    let new = lines(4, 10);
    let j = ids(&new);
    let id = &append(store, &target("p", "m"), &new, most(4), t0()).await[0];
    claim(store, "a", LONG, t0()).await;
    store.begin_submit(id, "a").await.unwrap().unwrap();
    assert!(store.submitted(id, "a", "remote", t0()).await.unwrap());
    let held = || async { claim(store, "a", LONG, t0()).await.remove(0) };
    let open = |b: &HeldBatch| -> Vec<(JobId, bool)> {
        b.jobs
            .iter()
            .map(|o| (o.job.message.id, o.rerouted))
            .collect()
    };
    assert!(store.rerouted(id, "a", &j[..2], false).await.unwrap());
    let batch = held().await;
    assert_eq!(
        open(&batch),
        [(j[0], true), (j[1], true), (j[2], false), (j[3], false)]
    );
    assert!(!batch.hedged && !batch.all_rerouted());
    store.settled(id, &[j[0], j[2]]).await.unwrap();
    let batch = held().await;
    assert_eq!(open(&batch), [(j[1], true), (j[3], false)]);
    assert_eq!(batch.lines, 4);
    assert!(store.rerouted(id, "a", &j[3..], true).await.unwrap());
    let batch = held().await;
    assert!(batch.hedged && batch.all_rerouted());
}

pub async fn a_finished_batch_is_never_claimed_again(store: &dyn ProviderBatchStore) {
    let (t, new) = (target("p", "m"), lines(2, 10));
    let made = append(store, &t, &new, most(2), t0()).await;
    let id = &made[0];
    claim(store, "a", LONG, t0()).await;
    assert!(!store.finish(id, "b", at(10)).await.unwrap());
    assert!(store.finish(id, "a", at(10)).await.unwrap());
    assert!(!store.finish(id, "a", at(11)).await.unwrap());
    assert!(claim_ids(store, "a", at(12)).await.is_empty());
    assert!(everything(store).await.is_empty());
    assert!(store.counts().await.unwrap().is_empty());
    // Its job rows went with it: appended again, the job is new to the store.
    assert_ne!(append(store, &t, &new[..1], most(2), at(13)).await, made);
}

pub async fn release_lets_another_owner_claim_at_once(store: &dyn ProviderBatchStore) {
    let made = append(store, &target("p", "m"), &lines(3, 10), most(1), t0()).await;
    assert_eq!(store.claim("a", LONG, 2, t0()).await.unwrap().len(), 2);
    assert_eq!(claim_ids(store, "c", t0()).await, made[2..]);
    assert!(claim_ids(store, "b", t0()).await.is_empty());
    store.release("a").await.unwrap();
    assert_eq!(claim_ids(store, "b", t0()).await, made[..2]);
    // Released, the old holder lost them; another owner's stay its own.
    assert_eq!(store.begin_submit(&made[0], "a").await.unwrap(), None);
    assert!(claim_ids(store, "d", t0()).await.is_empty());
}

pub async fn counts_batches_not_done_by_provider_and_state(store: &dyn ProviderBatchStore) {
    let p2 = append(store, &target("p2", "m"), &lines(3, 10), most(1), t0()).await;
    assert_eq!(claim_ids(store, "a", t0()).await, p2);
    for id in &p2 {
        store.begin_submit(id, "a").await.unwrap().unwrap();
    }
    assert!(store.submitted(&p2[1], "a", "remote", t0()).await.unwrap());
    assert!(store.finish(&p2[2], "a", t0()).await.unwrap());
    append(store, &target("p1", "m"), &lines(2, 10), most(9), t0()).await;
    let count = |provider: &str, state, batches| StateCount {
        provider: provider.into(),
        state,
        batches,
    };
    let expected = [
        count("p1", BatchState::Collecting, 1),
        count("p2", BatchState::Submitting, 1),
        count("p2", BatchState::Submitted, 1),
    ];
    assert_eq!(store.counts().await.unwrap(), expected);
}

pub async fn lists_batches_newest_first_with_their_open_jobs(store: &dyn ProviderBatchStore) {
    let older = append(store, &target("p", "m1"), &lines(2, 10), most(2), t0()).await;
    let newer = append(store, &target("p", "m2"), &lines(3, 10), most(3), at(10)).await;
    assert_eq!(
        claim_ids(store, "a", at(20)).await,
        [older[0].clone(), newer[0].clone()]
    );
    store.begin_submit(&older[0], "a").await.unwrap().unwrap();
    assert!(store.finish(&older[0], "a", at(21)).await.unwrap());

    let open = store.list(false, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].batch.id, newer[0]);
    assert_eq!(open[0].batch.state, BatchState::Collecting);
    assert_eq!(
        (open[0].open_jobs, open[0].owner.as_deref()),
        (3, Some("a"))
    );
    assert!(
        open[0].batch.jobs.is_empty(),
        "a summary carries no job bodies"
    );

    let all = store.list(true, 10).await.unwrap();
    let listed: Vec<(&str, BatchState, u64)> = all
        .iter()
        .map(|b| (b.batch.id.as_str(), b.batch.state, b.open_jobs))
        .collect();
    assert_eq!(
        listed,
        [
            (newer[0].as_str(), BatchState::Collecting, 3),
            (older[0].as_str(), BatchState::Done, 0)
        ]
    );
    assert_eq!(store.list(true, 1).await.unwrap().len(), 1);
}
