//! The cache at the API: what the cache may do for a job ([`plan`],
//! decided when it is validated), the semantic index ([`semantic`]) and
//! its verifier ([`verify`]), the ledger rows the API writes itself ([`ledger`]). The cache's part in a
//! submission is two of its stages:
//! `submission::lookup` (answer from the cache) and `submission::join`
//! (join an identical job in flight); `DELETE /v1/cache` is
//! `routes::cache`.

pub mod ledger;
pub mod lexicon;
pub mod plan;
pub mod semantic;
pub mod verify;

use sluice_core::cache::CacheKind;
use sluice_core::metrics::Metrics;

/// Counts one cache decision (`hit`, `miss`, `error`) of one kind.
pub(crate) fn count(metrics: &Metrics, kind: CacheKind, outcome: &str) {
    metrics
        .cache_requests
        .with_label_values(&[kind.as_str(), outcome])
        .inc();
}
