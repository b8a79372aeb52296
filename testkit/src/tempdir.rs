//! Temporary directories for tests, removed (with their contents) on drop.

use std::path::{Path, PathBuf};

/// A temporary directory under the system temp dir, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    /// Creates `spate-test-<name>-<pid>-<nanos>`.
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("spate-test-{name}-{}-{}", std::process::id(), crate::nanos()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        Dir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
