//! The `[worker.fair]` table: fair share between tenants in each worker's
//! gate (see `crate::fair` and the worker's `fair` module).

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairConfig {
    /// Fair share on. Off, each priority class is served as its queue
    /// delivers it, first come first served (a key's cap still holds).
    pub enabled: bool,
    /// Jobs a worker takes from each priority queue beyond its prefetch,
    /// to choose among: how deep into one tenant's backlog it looks for
    /// the jobs of others. Held jobs are unacked, and counted in the
    /// backlog the autoscaler reads.
    pub hold_jobs: u16,
    /// Provider calls' worth of jobs a worker lets wait for a provider at
    /// once (handed to the batcher, not yet sent, not ended): a chat job is
    /// a call, `max_batch_size` completions or embeddings jobs are one
    /// (they go out as one array call). The others wait in the gate, in
    /// fair order. The most: the gate shrinks it while calls wait for the
    /// provider. 0: `max_batch_size`.
    pub window_calls: usize,
    /// How long a key's in-flight slot outlives a worker that died
    /// holding it, in seconds.
    pub slot_lease_s: u64,
}

impl Default for FairConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hold_jobs: 128,
            window_calls: 0,
            slot_lease_s: 300,
        }
    }
}

impl FairConfig {
    /// The window in calls, given the batch size.
    pub fn window(&self, max_batch_size: usize) -> usize {
        if self.window_calls == 0 {
            max_batch_size.max(1)
        } else {
            self.window_calls
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.slot_lease_s == 0 {
            return Err("worker.fair: slot_lease_s must be above 0".into());
        }
        Ok(())
    }
}
