//! What the mirage-kv test binaries share: a scratch directory and a way
//! to run the binary.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A fresh directory under the system's temporary directory, removed when
/// dropped; the process id in its name keeps test binaries apart.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mirage-kv-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `mirage-kv` with `args` and waits for it.
pub fn kv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirage-kv")).args(args).output().unwrap()
}
