//! The domain of Sluice, free of I/O.
//!
//! - [`backoff`]: the exponential backoff every retry and reconnect waits by.
//! - [`ids`]: time-sortable job ids.
//! - [`job`]: what a job is, the states it moves through, and what a caller sees.
//! - [`message`]: the message a job travels in through the queue.
//! - [`config`]: the TOML configuration and its validation.
//! - [`batching`]: batch keys (model + route + prompt-prefix hash) and token estimates.
//! - [`cache`]: cache modes, keys, what a hit shows, and the semantic cache's vectors.
//! - [`repeat`]: repeated provider calls (a worker died mid-call) and their charge.
//! - [`split`]: exact integer splits of a batch total across its jobs.
//! - [`stream`]: streamed answers: the chunk log, assembling chunks into
//!   the answer, and streaming a finished answer.
//! - [`tier`]: cost tiers (cache, provider batch, flex, real time) and the
//!   rule that picks a call's from its jobs' deadlines.
//! - [`metrics`]: the Prometheus metrics every role shares.
//! - [`services`]: where RabbitMQ, Redis and PostgreSQL are (flags,
//!   environment and defaults, for every binary).
//! - [`view`]: a job as the API (and a webhook's `data`) shows it.
//! - [`webhook`]: webhook targets, events, the Standard Webhooks signature;
//!   [`webhook_address`]: which addresses a webhook may reach.

pub mod backoff;
pub mod batching;
pub mod budget;
pub mod cache;
pub mod config;
pub mod fair;
pub mod ids;
pub mod job;
pub mod ledger;
pub mod message;
pub mod metrics;
pub mod pricing;
pub mod repeat;
pub mod services;
pub mod split;
pub mod stream;
pub mod tier;
pub mod trace;
pub mod view;
pub mod webhook;
pub mod webhook_address;

pub use ids::JobId;
pub use job::{Endpoint, JobError, JobRecord, JobStatus, Priority, Rejection, Usage};
pub use message::JobMessage;
pub use tier::Tier;
