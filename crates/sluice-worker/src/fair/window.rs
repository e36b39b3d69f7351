//! How many provider calls' worth of jobs the gate lets wait for a
//! provider at once. Jobs past the
//! gate are served in the order the provider's budget and concurrency
//! limit take them, not in fair order, so the fewer wait there the better;
//! but too few and the provider idles between them.
//!
//! So the window adapts, additive increase and multiplicative decrease,
//! once per [`super::FLUSH_EVERY`]: jobs that waited for their call more
//! than [`TARGET`] past their batch's own wait mean the provider is the
//! bottleneck: the window shrinks by a quarter. Jobs that went out without
//! waiting, while the gate had more to give, mean it can take more: it
//! grows by a quarter (at least one). It stays between 1 and the
//! configured window (`[worker.fair] window_calls`, by default the batch
//! size), which a provider without a bottleneck keeps it at.

use std::time::Duration;

/// The wait for a call, past a job's batch wait, the window steers to.
pub const TARGET: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(super) struct Window {
    max: usize,
    now: usize,
    /// The longest wait past its batch of a job sent since the last step.
    worst: Option<Duration>,
    /// The gate held jobs it could not pass for the window since then.
    wanted_more: bool,
}

impl Window {
    pub(super) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            now: max,
            worst: None,
            wanted_more: false,
        }
    }

    /// Jobs that may wait for a provider at once, now.
    pub(super) fn size(&self) -> usize {
        self.now
    }

    /// A job's call left after it waited `waited` past its batch's wait.
    pub(super) fn sent(&mut self, waited: Duration) {
        self.worst = Some(self.worst.map_or(waited, |w| w.max(waited)));
    }

    /// The gate held a job back because the window was full.
    pub(super) fn wanted_more(&mut self) {
        self.wanted_more = true;
    }

    /// One step of the steering, from what was seen since the last.
    pub(super) fn adapt(&mut self) {
        match self.worst.take() {
            Some(worst) if worst > TARGET => self.now = (self.now * 3 / 4).max(1),
            Some(worst) if worst <= TARGET / 2 && self.wanted_more => {
                self.now = (self.now + (self.now / 4).max(1)).min(self.max);
            }
            _ => {}
        }
        self.wanted_more = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_at_the_provider_shrink_it_and_quick_calls_grow_it_back_to_the_configured_size() {
        let mut w = Window::new(32);
        for _ in 0..20 {
            w.sent(Duration::from_millis(400));
            w.adapt();
        }
        assert_eq!(w.size(), 1, "a saturated provider: one waits at a time");
        let mut steps = 0;
        while w.size() < 32 {
            w.sent(Duration::from_millis(2));
            w.wanted_more();
            w.adapt();
            steps += 1;
        }
        assert!(steps <= 20, "{steps} steps to grow back");
        // Never past the configured size; nothing seen, nothing changes.
        w.sent(Duration::ZERO);
        w.wanted_more();
        w.adapt();
        w.adapt();
        assert_eq!(w.size(), 32);
    }

    #[test]
    fn it_grows_only_when_the_gate_held_jobs_back() {
        let mut w = Window::new(8);
        w.sent(Duration::from_millis(400));
        w.adapt();
        assert_eq!(w.size(), 6);
        w.sent(Duration::ZERO);
        w.adapt();
        assert_eq!(w.size(), 6, "no demand for more");
        // Waits between half the target and the target hold it.
        w.sent(TARGET * 3 / 4);
        w.wanted_more();
        w.adapt();
        assert_eq!(w.size(), 6);
    }
}
