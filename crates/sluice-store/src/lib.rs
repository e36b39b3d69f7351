//! Sluice's stores, each a trait with a real implementation and an
//! in-memory one:
//!
//! - [`jobs`]: job records, their forward-only state changes and the
//!   completion notifications long-polls wait on (Redis through fred).
//! - [`cache`]: the response cache: exact entries, in-flight coalescing,
//!   semantic vectors (Redis).
//! - [`budget`]: fleet-wide provider rate budgets (Redis).
//! - [`fair`]: fair share's virtual counters and keys' in-flight slots
//!   (Redis).
//! - [`files`]: tenants' uploads for the Files API, kept in parts
//!   (PostgreSQL).
//! - [`tenants`]: tenants and API keys, keys stored hashed (PostgreSQL
//!   through sqlx), and the migrations.
//! - [`provider_batches`]: the durable home of jobs handed to a provider's
//!   Batch API, taken by workers on lease (PostgreSQL).
//! - [`group`]: group commit, one write for concurrent callers' items.

pub mod batches;
pub mod budget;
pub mod cache;
pub mod fair;
pub mod files;
pub mod group;
pub mod jobs;
pub mod provider_batches;
pub mod tenants;
pub mod usage;
pub mod webhooks;

mod error;

pub use error::StoreError;
