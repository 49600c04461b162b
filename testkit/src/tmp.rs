//! Private temporary directories, removed when dropped.

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary directory whose name
/// starts with `prefix`; removed (with its contents) when dropped.
pub fn tmpdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary directory")
}

/// A temporary directory that can outlive the test for a post-mortem:
/// with `TESTKIT_KEEP` set in the environment it is left in place (and
/// its path is on the failing test's output through [`TempDir::path`]'s
/// callers).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh directory whose name carries `tag` (say, the test's name).
    pub fn new(tag: &str) -> TempDir {
        TempDir(tmpdir(&format!("{tag}.")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.0.path()
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TESTKIT_KEEP").is_some() {
            let keep = std::mem::replace(&mut self.0, tmpdir("testkit-spare."));
            eprintln!("TESTKIT_KEEP: keeping {}", keep.keep().display());
        }
    }
}
