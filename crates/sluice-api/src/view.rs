//! A job as the API shows it: the record plus links.

use serde::Serialize;
use sluice_core::JobRecord;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub cancel: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Always `job`.
    pub object: &'static str,
    #[serde(flatten)]
    pub job: JobRecord,
    pub links: Links,
}

impl JobView {
    pub fn location(id: &sluice_core::JobId) -> String {
        format!("/v1/jobs/{id}")
    }
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        let this = Self::location(&job.id);
        Self {
            object: "job",
            links: Links {
                cancel: format!("{this}/cancel"),
                this,
            },
            job,
        }
    }
}

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
