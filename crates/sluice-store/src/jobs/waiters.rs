//! Wake-ups for long-polls: one entry per watched job, however many
//! callers wait on it, fed by the store's single completion subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_core::JobId;
use tokio::sync::watch;

#[derive(Default)]
pub struct WaiterHub {
    entries: Mutex<HashMap<JobId, Entry>>,
}

struct Entry {
    tx: watch::Sender<u64>,
    watchers: usize,
}

impl WaiterHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers interest in `id`; dropping the [`Watch`] withdraws it.
    pub fn watch(self: &Arc<Self>, id: JobId) -> Watch {
        let mut entries = self.lock();
        let entry = entries.entry(id).or_insert_with(|| Entry {
            tx: watch::channel(0).0,
            watchers: 0,
        });
        entry.watchers += 1;
        Watch {
            rx: entry.tx.subscribe(),
            hub: Arc::clone(self),
            id,
        }
    }

    /// Wakes the watchers of `id`.
    pub fn notify(&self, id: JobId) {
        if let Some(entry) = self.lock().get(&id) {
            entry.tx.send_modify(|n| *n += 1);
        }
    }

    /// Wakes every watcher, so that each reads its job again: used when the
    /// completion subscription reconnected and may have missed a message.
    pub fn notify_all(&self) {
        for entry in self.lock().values() {
            entry.tx.send_modify(|n| *n += 1);
        }
    }

    /// Jobs being watched now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Entry>> {
        // A panic while holding this lock leaves the map consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Interest in one job's end.
pub struct Watch {
    rx: watch::Receiver<u64>,
    hub: Arc<WaiterHub>,
    id: JobId,
}

impl Watch {
    /// Returns once the job was notified after this watch was made (or
    /// after the previous `changed`).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives in the hub as long as this watch; unreachable.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut entries = self.hub.lock();
        if let Some(entry) = entries.get_mut(&self.id) {
            entry.watchers -= 1;
            if entry.watchers == 0 {
                entries.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waits (a second at most) for each watch to be woken.
    async fn woken(watches: [&mut Watch; 2]) {
        for watch in watches {
            tokio::time::timeout(Duration::from_secs(1), watch.changed())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_notify_after_watching_wakes_and_entries_are_dropped() {
        let hub = WaiterHub::new();
        let id = JobId::new();
        let mut a = hub.watch(id);
        let mut b = hub.watch(id);
        assert_eq!(hub.len(), 1);
        hub.notify(id);
        woken([&mut a, &mut b]).await;
        // Nothing more was notified: a second wait does not return.
        assert!(tokio::time::timeout(Duration::from_millis(20), a.changed())
            .await
            .is_err());
        drop(a);
        assert_eq!(hub.len(), 1);
        drop(b);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn notify_all_wakes_everyone() {
        let hub = WaiterHub::new();
        let mut a = hub.watch(JobId::new());
        let mut b = hub.watch(JobId::new());
        hub.notify_all();
        woken([&mut a, &mut b]).await;
    }
}
