use std::sync::Mutex;

use sluice_core::Priority;

use super::*;
use crate::contract::outgoing;

#[test]
fn plan_packs_each_priority_in_order_up_to_the_limit() {
    use Priority::{Batch, Interactive, Standard};
    let messages: Vec<Outgoing> = [
        Standard,
        Interactive,
        Standard,
        Standard,
        Batch,
        Standard,
        Interactive,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, p)| outgoing(p, &i.to_string()))
    .collect();
    assert_eq!(
        plan(&messages, 3),
        vec![vec![0, 2, 3], vec![1, 6], vec![4], vec![5]]
    );
    let singles: Vec<Vec<usize>> = (0..messages.len()).map(|i| vec![i]).collect();
    assert_eq!(plan(&messages, 1), singles);
    assert_eq!(
        plan(&messages, 0),
        singles,
        "0 means no packing, not a panic"
    );
    assert!(plan(&[], 16).is_empty());
}

#[test]
fn plan_starts_a_new_pack_past_the_byte_limit() {
    let big = "x".repeat(MAX_PACK_BYTES / 2);
    let messages: Vec<Outgoing> = (0..3).map(|_| outgoing(Priority::Batch, &big)).collect();
    assert_eq!(plan(&messages, 16), vec![vec![0, 1], vec![2]]);
    let huge = "x".repeat(MAX_PACK_BYTES + 1);
    let alone = vec![outgoing(Priority::Batch, &huge)];
    assert_eq!(
        plan(&alone, 16),
        vec![vec![0]],
        "an oversized job still goes"
    );
}

#[test]
fn a_pack_decodes_to_its_parts() {
    let messages = [
        outgoing(Priority::Standard, "{\"a\":1}"),
        outgoing(Priority::Standard, ""),
        outgoing(Priority::Standard, "ünïcode ✓"),
    ];
    let body = encode(messages.iter());
    let parts = decode(&body).unwrap();
    let expected: Vec<Part> = messages
        .iter()
        .map(|m| Part {
            headers: m.headers.clone(),
            body: m.body.clone(),
        })
        .collect();
    assert_eq!(parts, expected);
    assert_eq!(decode(&encode(std::iter::empty())).unwrap(), vec![]);
}

#[test]
fn a_damaged_pack_is_refused() {
    let body = encode([outgoing(Priority::Standard, "body")].iter());
    for cut in 0..body.len() {
        assert!(decode(&body.slice(..cut)).is_err(), "cut at {cut}");
    }
    let mut longer = body.to_vec();
    longer.push(0);
    assert!(decode(&Bytes::from(longer)).is_err());
    let lying = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0]);
    assert!(decode(&lying).is_err(), "a huge count allocates nothing");
}

/// Records how (and how often) the whole pack was settled.
struct Recorder(Arc<Mutex<Vec<Settlement>>>);

#[async_trait]
impl Settle for Recorder {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(how);
        Ok(())
    }
}

async fn settle_parts(hows: &[Settlement]) -> Vec<Settlement> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let parts = PartSettle::split(Box::new(Recorder(Arc::clone(&seen))), hows.len());
    for (part, how) in parts.into_iter().zip(hows) {
        assert!(
            seen.lock().unwrap().is_empty(),
            "settled before the last part"
        );
        Box::new(part).settle(*how).await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    seen
}

#[tokio::test]
async fn the_pack_is_settled_once_by_its_last_part_with_the_strongest_need() {
    use Settlement::{Ack, DeadLetter, Requeue};
    assert_eq!(settle_parts(&[Ack, Ack, Ack]).await, vec![Ack]);
    assert_eq!(
        settle_parts(&[Ack, DeadLetter, Ack]).await,
        vec![DeadLetter]
    );
    assert_eq!(
        settle_parts(&[DeadLetter, Requeue, Ack]).await,
        vec![Requeue]
    );
    assert_eq!(settle_parts(&[Requeue, DeadLetter]).await, vec![Requeue]);
    assert_eq!(settle_parts(&[Ack]).await, vec![Ack]);
}

#[tokio::test]
async fn a_part_dropped_unsettled_leaves_the_pack_unsettled() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut parts = PartSettle::split(Box::new(Recorder(Arc::clone(&seen))), 2);
    drop(parts.pop());
    let first = parts.pop().unwrap();
    Box::new(first).settle(Settlement::Ack).await.unwrap();
    assert!(seen.lock().unwrap().is_empty());
}
