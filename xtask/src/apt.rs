//! Installing the Debian packages a task needs: `cargo_mirage::apt`.

use crate::TaskError;

/// Installs those of `packages` that are missing, saying which; as a user
/// other than root, fails with the command to run instead.
pub(crate) fn ensure(packages: &[&str]) -> Result<(), TaskError> {
    cargo_mirage::apt::ensure(packages).map_err(|e| e.to_string())
}
