//! The `[files]` table: what the Files API (`/v1/files`) accepts and how
//! long it keeps a file.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest upload, in bytes (OpenAI's batch input limit: 200 MB).
    pub max_bytes: u64,
    /// Most lines in an upload (OpenAI's batch input limit: 50,000).
    pub max_lines: u64,
    /// How long a file is kept after its upload, in seconds; 0 keeps it
    /// until it is deleted.
    pub retention_s: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_bytes: 200_000_000,
            max_lines: 50_000,
            retention_s: 30 * 86_400,
        }
    }
}

impl FilesConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_bytes == 0 || self.max_lines == 0 {
            return Err("files: max_bytes and max_lines must be above 0".into());
        }
        Ok(())
    }

    /// When a file uploaded at `now` is deleted, if ever.
    pub fn expires_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let kept = i64::try_from(self.retention_s).ok().filter(|&s| s > 0)?;
        Some(now + chrono::Duration::seconds(kept))
    }
}
