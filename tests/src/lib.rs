//! The end-to-end harness: a [`Stack`] of real `sluice` processes (mock
//! provider, API, workers) on free ports, against the real RabbitMQ, Redis
//! and PostgreSQL, isolated by a unique prefix and a database of its own,
//! all of it removed when the stack is dropped. Each test drives it over
//! HTTP with a [`Client`].
//!
//! The tests spawn `target/debug/sluice` (built by `scripts/test.sh`), or
//! the binary `SLUICE_BIN` names. Set `TEST_LOG=1` to see the roles' logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod client;
mod process;
pub mod receiver;
mod stack;

pub use client::{is_terminal, Client, Response};
pub use process::{binary, run_bench, Role};
pub use stack::{amqp_url, redis_url, CompletionCounter, Stack, StackOptions, TEST_WEBHOOKS_TOML};
