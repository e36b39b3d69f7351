//! Job ids: ULIDs, so that ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's id: a ULID rendered in Crockford base32 (26 characters),
/// lexicographically sortable by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(ulid::Ulid);

/// One generator per process, so that ids made in the same millisecond
/// still sort in the order they were made (the random part counts up).
static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());

impl JobId {
    /// A new id for a job created now: later than every id this process
    /// made before (and, across processes, ordered to the millisecond).
    pub fn new() -> Self {
        let next = GENERATOR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .generate();
        // The random part overflows only after 2^80 ids in one millisecond;
        // a plain new id is then still right to the millisecond.
        Self(next.unwrap_or_else(|_| ulid::Ulid::new()))
    }

    /// When the id was made, to the millisecond.
    pub fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::<chrono::Utc>::from(self.0.datetime())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is not a job id.
#[derive(Debug, thiserror::Error)]
#[error("not a job id: {0:?}")]
pub struct BadJobId(String);

impl FromStr for JobId {
    type Err = BadJobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| BadJobId(s.to_owned()))
    }
}

impl TryFrom<String> for JobId {
    type Error = BadJobId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = JobId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = JobId::new();
        assert!(a.to_string() < b.to_string());
        assert!(a.created_at() < b.created_at());
        let age = chrono::Utc::now() - a.created_at();
        assert!((0..1_000).contains(&age.num_milliseconds()), "{age}");
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
        assert!("nope".parse::<JobId>().is_err());
    }
}
