//! Publish properties, and each message's outcome from its confirm.

use std::collections::{BTreeMap, HashSet};

use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::time::{timeout_at, Instant};

use super::{string_arg, Frame, CONFIRM_TIMEOUT};
use crate::{pack, Outgoing, QueueError};

pub(super) fn properties(message: &Outgoing, timestamp: u64) -> BasicProperties {
    header_properties(&message.headers, timestamp)
}

/// Persistent, with these headers, and the job id as the message id.
pub(super) fn header_properties(
    message_headers: &BTreeMap<String, String>,
    timestamp: u64,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in message_headers {
        headers.insert(key.as_str().into(), string_arg(value));
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(timestamp)
        .with_headers(headers);
    match message_headers.get("job-id") {
        Some(id) => properties.with_message_id(id.as_str().into()),
        None => properties,
    }
}

/// The frame of one group of `messages` (see [`pack::plan`]): the message
/// itself when alone, else a pack of them.
pub(super) fn frame(
    exchange: &str,
    messages: &[Outgoing],
    group: &[usize],
    timestamp: u64,
) -> Frame {
    let first = &messages[group[0]];
    let routing_key = first.priority.as_str().to_owned();
    if group.len() == 1 {
        return Frame {
            exchange: exchange.to_owned(),
            routing_key,
            body: first.body.clone(),
            properties: properties(first, timestamp),
            message_id: first.headers.get("job-id").cloned(),
        };
    }
    let body = pack::encode(group.iter().map(|&i| &messages[i]));
    // The first job's id is unique, and names the pack if it comes back.
    let message_id = first.headers.get("job-id").map(|id| format!("pack-{id}"));
    let mut headers = FieldTable::default();
    headers.insert(
        pack::PACK_HEADER.into(),
        string_arg(&group.len().to_string()),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(timestamp)
        .with_headers(headers);
    let properties = match &message_id {
        Some(id) => properties.with_message_id(id.as_str().into()),
        None => properties,
    };
    Frame {
        exchange: exchange.to_owned(),
        routing_key,
        body,
        properties,
        message_id,
    }
}

/// Each of `n` messages' outcome, from the outcome of the frame of its group.
pub(super) fn spread(
    n: usize,
    groups: &[Vec<usize>],
    outcomes: Vec<Result<(), QueueError>>,
) -> Vec<Result<(), QueueError>> {
    let mut each: Vec<Result<(), QueueError>> = (0..n)
        .map(|_| Err(QueueError::Unavailable("not published".into())))
        .collect();
    for (group, outcome) in groups.iter().zip(outcomes) {
        for &i in group {
            each[i] = outcome.clone();
        }
    }
    each
}

pub(super) async fn await_confirm(
    sent: Result<PublisherConfirm, QueueError>,
    deadline: Instant,
) -> Result<Confirmation, QueueError> {
    match timeout_at(deadline, sent?).await {
        Err(_) => Err(QueueError::ConfirmTimeout(CONFIRM_TIMEOUT)),
        Ok(Err(e)) => Err(QueueError::Unavailable(format!("publisher confirm: {e}"))),
        Ok(Ok(confirmation)) => Ok(confirmation),
    }
}

fn returned_id(confirmation: &Confirmation) -> Option<Option<&str>> {
    match confirmation {
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => Some(
            returned
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str()),
        ),
        _ => None,
    }
}

/// Each message's outcome from its confirmation.
///
/// lapin attaches a returned (unroutable) message to the first confirm it
/// completes after the return; when the broker acks several tags at once
/// (`multiple`) that may be another message's. So returns are matched to
/// the batch's messages by message id (the job id): a message whose id
/// came back is unroutable, and a confirm carrying a return that is no
/// message of this batch counts as unroutable too (a false failure, never
/// a false success).
pub(super) fn outcomes(
    ids: &[Option<&str>],
    confirmations: Vec<Result<Confirmation, QueueError>>,
) -> Vec<Result<(), QueueError>> {
    let returned: HashSet<String> = confirmations
        .iter()
        .flatten()
        .filter_map(returned_id)
        .flatten()
        .map(str::to_owned)
        .collect();
    let ours: HashSet<&str> = ids.iter().flatten().copied().collect();
    let outcome = |id: &Option<&str>, confirmation: Confirmation| {
        if id.is_some_and(|id| returned.contains(id)) {
            return Err(QueueError::Unroutable);
        }
        match &confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => match returned_id(&confirmation).flatten() {
                Some(other) if ours.contains(other) => Ok(()),
                _ => Err(QueueError::Unroutable),
            },
            Confirmation::Nack(_) => Err(QueueError::Nacked),
            Confirmation::NotRequested => Err(QueueError::Unavailable(
                "publisher confirms are off on this channel".into(),
            )),
        }
    };
    ids.iter()
        .zip(confirmations)
        .map(|(id, confirmation)| confirmation.and_then(|c| outcome(id, c)))
        .collect()
}
