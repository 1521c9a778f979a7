//! Installing the Debian packages a task needs.

use std::process::Command;

use crate::TaskError;

/// Whether Debian package `name` is installed.
fn installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", name])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Installs those of `packages` that are missing, saying which; as a user
/// other than root, fails with the command to run instead.
pub(crate) fn ensure(packages: &[&str]) -> Result<(), TaskError> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "these Debian packages are needed and missing: {list}\n\
             install them as root: apt-get update && apt-get install -y {list}"
        ));
    }
    println!("==> installing Debian packages: {list}");
    let update = Command::new("apt-get").arg("update").status().map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !update.success() {
        return Err(format!("apt-get update failed ({update}); needed to install {list}"));
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !install.success() {
        return Err(format!("apt-get install -y {list} failed ({install})"));
    }
    Ok(())
}
