//! Temporary directories, removed when dropped.

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary directory, removed
/// with everything in it when dropped.
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new directory whose name starts with `survey-{name}-`.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("survey-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        TestDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(rel)
    }

    /// The collector's database file in the directory, `survey.db`.
    pub fn db(&self) -> PathBuf {
        self.join("survey.db")
    }

    /// Every byte of every file directly in the directory.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path()).expect("the directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_file() {
                out.extend(std::fs::read(&path).expect("a file"));
            }
        }
        out
    }
}

impl Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}
