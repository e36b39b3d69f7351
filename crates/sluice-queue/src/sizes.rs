//! Jobs per message in each job queue, as this process's consumers saw
//! them lately. The broker counts messages, and a message may be a pack of
//! several jobs ([`crate::pack`]); this turns a queue's ready messages into
//! an estimate of its ready jobs (`sluice_queue_ready_jobs`, what the
//! worker autoscaler reads).

use std::sync::{Mutex, PoisonError};

use sluice_core::Priority;

/// How much each new message moves a queue's average (1/8), as the
/// consumer's prefetch credit does.
const WEIGHT: f64 = 0.125;

/// A moving average of the jobs per message, one per job queue.
#[derive(Debug, Default)]
pub struct JobsPerMessage {
    /// Indexed by [`slot`]; `None` until a message of that queue was seen.
    averages: Mutex<[Option<f64>; 3]>,
}

fn slot(priority: Priority) -> usize {
    match priority {
        Priority::Interactive => 0,
        Priority::Standard => 1,
        Priority::Batch => 2,
    }
}

impl JobsPerMessage {
    /// Records a message of `jobs` jobs taken from `priority`'s queue.
    pub fn record(&self, priority: Priority, jobs: usize) {
        let jobs = jobs.max(1) as f64;
        let mut averages = self.averages.lock().unwrap_or_else(PoisonError::into_inner);
        let average = &mut averages[slot(priority)];
        *average = Some(match *average {
            Some(a) => a + WEIGHT * (jobs - a),
            None => jobs,
        });
    }

    /// The average for `priority`'s queue; `None` before its first message.
    pub fn get(&self, priority: Priority) -> Option<f64> {
        self.averages.lock().unwrap_or_else(PoisonError::into_inner)[slot(priority)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_follows_the_messages_of_each_queue() {
        let sizes = JobsPerMessage::default();
        assert_eq!(sizes.get(Priority::Batch), None);
        sizes.record(Priority::Batch, 16);
        assert_eq!(sizes.get(Priority::Batch), Some(16.0));
        for _ in 0..100 {
            sizes.record(Priority::Batch, 1);
        }
        let batch = sizes.get(Priority::Batch).unwrap_or_default();
        assert!((1.0..1.01).contains(&batch), "{batch}");
        assert_eq!(sizes.get(Priority::Standard), None, "queues are apart");
    }
}
