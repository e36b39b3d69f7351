//! The queue-depth gauges: every few seconds, the broker's count of ready
//! messages in each queue (a passive `queue.declare`), into
//! `sluice_queue_depth{queue}`, and for the job queues the jobs they stand
//! for, into `sluice_queue_ready_jobs{queue}`: ready messages times the
//! jobs per message this worker's consumers saw lately (one before any).
//! Every worker polls, so a dashboard takes the `max` across instances.
//! Added to the jobs the workers hold unacked (`sluice_inflight_jobs`),
//! that is the job backlog the worker autoscaler reads (k8s/README.md).

use std::sync::Arc;
use std::time::Duration;

use sluice_core::metrics::Metrics;
use sluice_core::Priority;
use sluice_queue::{JobQueue, Source};
use tokio_util::sync::CancellationToken;

/// How often the depth is read.
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// The `queue` label of a source: the priority class, `dead` or `webhooks`
/// (the webhook deliveries waiting for the webhooks role).
pub fn label(source: Source) -> &'static str {
    match source {
        Source::Jobs(priority) => priority.as_str(),
        Source::DeadLetters => "dead",
        Source::Webhooks => "webhooks",
    }
}

/// Reads every queue's depth once into the gauge; a queue the broker does
/// not answer for keeps its last value (and is logged).
pub async fn poll_once(queue: &dyn JobQueue, metrics: &Metrics) {
    let sources = Priority::ALL
        .into_iter()
        .map(Source::Jobs)
        .chain([Source::DeadLetters, Source::Webhooks]);
    for source in sources {
        match queue.depth(source).await {
            Ok(n) => {
                metrics
                    .queue_depth
                    .with_label_values(&[label(source)])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
                if let Source::Jobs(priority) = source {
                    metrics
                        .queue_ready_jobs
                        .with_label_values(&[label(source)])
                        .set(ready_jobs(n, queue.jobs_per_message(priority)));
                }
            }
            Err(e) => tracing::debug!(?source, error = %e, "cannot read the queue depth"),
        }
    }
}

/// Jobs in `messages` ready messages of `per_message` jobs on average
/// (one each when unknown), rounded up.
fn ready_jobs(messages: u64, per_message: Option<f64>) -> i64 {
    let jobs = (messages as f64 * per_message.unwrap_or(1.0).max(1.0)).ceil();
    // A float to integer cast saturates.
    jobs as i64
}

/// Polls until `stop`.
pub async fn poll(queue: Arc<dyn JobQueue>, metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        poll_once(queue.as_ref(), &metrics).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_queue::{MemoryQueue, Outgoing, Topology};

    #[tokio::test]
    async fn the_gauge_shows_each_queues_ready_messages() {
        let queue = MemoryQueue::new(Topology::new("t", 5));
        let message = |priority| Outgoing {
            priority,
            body: bytes::Bytes::from_static(b"{}"),
            headers: Default::default(),
        };
        let published = queue
            .publish(vec![
                message(Priority::Batch),
                message(Priority::Batch),
                message(Priority::Interactive),
            ])
            .await;
        assert!(published.iter().all(Result::is_ok));
        let metrics = Metrics::new();
        poll_once(&queue, &metrics).await;
        let text = metrics.render();
        for line in [
            r#"sluice_queue_depth{queue="batch"} 2"#,
            r#"sluice_queue_depth{queue="interactive"} 1"#,
            r#"sluice_queue_depth{queue="standard"} 0"#,
            r#"sluice_queue_depth{queue="dead"} 0"#,
            r#"sluice_queue_ready_jobs{queue="batch"} 2"#,
            r#"sluice_queue_ready_jobs{queue="standard"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn ready_packs_count_as_their_jobs() {
        assert_eq!(
            ready_jobs(10, None),
            10,
            "one job a message until one is seen"
        );
        assert_eq!(ready_jobs(10, Some(16.0)), 160);
        assert_eq!(ready_jobs(3, Some(1.5)), 5, "rounded up");
        assert_eq!(ready_jobs(0, Some(16.0)), 0);
    }
}
