//! Group commit: concurrent callers' items are written by one call of a
//! writer. Nothing waits for company: the writer takes whatever is queued
//! when it is free, so a lone call is written at once. Each caller hears
//! back only after its own items are written (or the write failed).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::StoreError;

/// Calls waiting for the writer; a full queue makes callers wait.
const QUEUE_DEPTH: usize = 256;

struct Call<T> {
    items: Vec<T>,
    reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// The sending side; the writer stops once every clone is dropped, after
/// it wrote what it holds.
pub struct GroupCommit<T> {
    tx: mpsc::Sender<Call<T>>,
    what: &'static str,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            what: self.what,
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the writer on `tasks`: `write` takes up to `max_items` items
    /// at once (calls past it wait for the next write). `what` names the
    /// writer in errors.
    pub fn start<W, F>(what: &'static str, max_items: usize, tasks: &TaskTracker, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tasks.spawn(run(rx, max_items, write));
        Self { tx, what }
    }

    /// Writes `items` with whatever else is waiting; answers once they are in.
    pub async fn submit(&self, items: Vec<T>) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable(format!("the {} writer has stopped", self.what));
        self.tx
            .send(Call { items, reply })
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::Shared)
    }
}

async fn run<T, W, F>(mut rx: mpsc::Receiver<Call<T>>, max_items: usize, write: W)
where
    W: Fn(Vec<T>) -> F,
    F: Future<Output = Result<(), StoreError>>,
{
    let mut calls: Vec<Call<T>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut count = first.items.len();
        calls.push(first);
        while count < max_items {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.items.len();
                    calls.push(next);
                }
                Err(_) => break,
            }
        }
        // The items move into one write; the callers keep their replies.
        let all: Vec<T> = calls
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.items))
            .collect();
        let outcome = write(all).await.map_err(Arc::new);
        for call in calls.drain(..) {
            let _ = call.reply.send(outcome.clone());
        }
    }
}
