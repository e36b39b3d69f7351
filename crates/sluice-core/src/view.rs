//! A job as the API shows it (and a webhook's `data` carries it): the
//! record plus links.

use crate::JobRecord;
use serde::Serialize;
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
    pub fn location(id: &crate::JobId) -> String {
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
