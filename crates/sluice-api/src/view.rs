//! A job as the API shows it (the view lives in `sluice_core::view`, so a
//! webhook's `data` is the same), and the batch answer.

use serde::Serialize;
pub use sluice_core::view::{JobView, Links};
use utoipa::ToSchema;

/// One entry of a batch answer: the job, or why it was not accepted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchEntry {
    Job(Box<JobView>),
    Error { error: crate::problem::Problem },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub object: &'static str,
    pub jobs: Vec<BatchEntry>,
}
