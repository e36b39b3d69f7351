//! The in-process harness: a `TestApp` per test over the in-memory twins
//! (`app`), request helpers (`client`), job envelopes (`jobs`), ledger
//! rows (`ledger`), and queue and store wrappers that fail on demand
//! (`faults`); `announced` reads what the API put on the webhook queue,
//! and `eventually` polls for what happens just after an answer.

pub mod announced;
pub mod app;
pub mod client;
pub mod eventually;
pub mod faults;
pub mod files;
pub mod jobs;
pub mod ledger;

pub use app::TestApp;
pub use client::Reply;
pub use eventually::eventually;
pub use faults::QueueFault;
pub use jobs::{cacheable, chat, semantic, with};
pub use ledger::Row;
