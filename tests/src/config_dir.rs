//! A gateway's configuration directory: a temporary directory whose files change atomically.
//!
//! The gateway watches the directory and may read a file at any moment, so every write goes
//! to a hidden temporary name first (neither `.yaml` nor visible to the gateway) and is then
//! renamed over the real one: the gateway sees the old file or the new one, never half of it.

use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::manifests;

/// A temporary configuration directory, removed when dropped.
pub struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory can be made"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `objects` as the YAML documents of `file`, atomically.
    pub fn write(&self, file: &str, objects: &[Value]) {
        self.write_text(file, &manifests::to_yaml(objects));
    }

    /// Writes `text` as the content of `file`, atomically; for content no builder makes.
    pub fn write_text(&self, file: &str, text: &str) {
        let staging = self.path().join(format!(".{file}.partial"));
        std::fs::write(&staging, text).expect("the staging file can be written");
        std::fs::rename(&staging, self.path().join(file)).expect("the staging file can be renamed");
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.path().join(file)).expect("the file exists");
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}
