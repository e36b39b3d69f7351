//! Publish properties, and each message's outcome from its confirm.

use std::collections::HashSet;

use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::time::{timeout_at, Instant};

use super::{string_arg, CONFIRM_TIMEOUT};
use crate::{Outgoing, QueueError};

pub(super) fn properties(message: &Outgoing, timestamp: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in &message.headers {
        headers.insert(key.as_str().into(), string_arg(value));
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(timestamp)
        .with_headers(headers);
    match message.headers.get("job-id") {
        Some(id) => properties.with_message_id(id.as_str().into()),
        None => properties,
    }
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
