//! The in-process harness: a `TestApp` per test over the in-memory twins
//! (`app`), request helpers (`client`), job envelopes (`jobs`), and queue
//! and store wrappers that fail on demand (`faults`).

pub mod app;
pub mod client;
pub mod faults;
pub mod jobs;

pub use app::TestApp;
pub use client::Reply;
pub use faults::QueueFault;
pub use jobs::{cacheable, chat, with};
