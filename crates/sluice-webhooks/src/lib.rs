//! The webhooks role.
//!
//! ```text
//! P.webhooks (quorum) ─▶ event: fan out to its targets (the job's URL, or
//!                        the tenant's endpoints), one delivery each
//!                      ─▶ retry: the next attempt of one delivery
//!   attempt: sign (every live secret) ─▶ POST (timeout, checked address)
//!          ─▶ 2xx: succeeded │ 410: gone (endpoint disabled)
//!          │ else: next step of the schedule, through a delay queue that
//!            dead-letters back to P.webhooks (not before a Retry-After)
//!            │ no step left: exhausted (counted in the metrics)
//!          ─▶ the attempt recorded in PostgreSQL ─▶ ack
//! ```
//!
//! Invariants: a message is acked only after its attempts are recorded and
//! their retries published (confirmed), so a crash at any point redelivers
//! it and loses nothing; a redelivered message makes an attempt again only
//! if that attempt is not recorded yet (the receiver may then see a repeat,
//! with the same `webhook-id`). Shutdown: stop consuming, finish the
//! attempts in flight, then return.

mod http;
pub mod metrics;
mod process;

use std::sync::Arc;

use sluice_core::config::WebhooksConfig;
use sluice_queue::{consume_until_stopped, JobQueue, Source, Topology, WebhookQueue};
use sluice_store::webhooks::WebhookStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::WebhookMetrics;

/// The webhooks role: everything it talks to.
pub struct Dispatcher {
    /// Consumes `Source::Webhooks`.
    pub queue: Arc<dyn JobQueue>,
    /// Publishes retries (the same queue, as a [`WebhookQueue`]).
    pub retries: Arc<dyn WebhookQueue>,
    pub store: Arc<dyn WebhookStore>,
    pub config: WebhooksConfig,
    /// The delay queues there are (from the schedule).
    pub topology: Topology,
    pub metrics: WebhookMetrics,
}

impl Dispatcher {
    /// Consumes and delivers until `shutdown`, then finishes the attempts
    /// in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), reqwest::Error> {
        let sender = http::Sender::new(&self.config)?;
        let this = Arc::new(process::Processor {
            sender,
            retries: self.retries,
            store: self.store,
            config: self.config,
            topology: self.topology,
            metrics: self.metrics,
        });
        let tasks = TaskTracker::new();
        let prefetch = this.config.concurrency;
        consume_until_stopped(
            self.queue.as_ref(),
            Source::Webhooks,
            prefetch,
            &shutdown,
            |delivery| {
                let this = Arc::clone(&this);
                tasks.spawn(async move { this.handle(delivery).await });
                std::future::ready(())
            },
        )
        .await;
        tasks.close();
        tasks.wait().await;
        tracing::info!("webhooks drained");
        Ok(())
    }
}
