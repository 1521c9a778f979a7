//! Installing the Debian packages a command needs (QEMU, the Xen harness's
//! tools), as root; as another user, an error with the command to run.

use std::process::Command;

use crate::{Error, ErrorKind};

/// Whether Debian package `name` is installed.
pub fn installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", name])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Installs those of `packages` that are missing, saying which. As a user
/// other than root, or where `apt-get` cannot run, fails with
/// [`ErrorKind::MissingTool`] and the command to run.
pub fn ensure(packages: &[&str]) -> Result<(), Error> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let needed = |why: String| {
        Error::new(
            ErrorKind::MissingTool,
            format!(
                "these Debian packages are needed and missing: {list} ({why})\n\
                 install them as root: apt-get update && apt-get install -y {list}"
            ),
        )
    };
    if !is_root() {
        return Err(needed("not root".into()));
    }
    println!("==> installing Debian packages: {list}");
    let update = Command::new("apt-get").arg("update").status().map_err(|e| needed(format!("apt-get: {e}")))?;
    if !update.success() {
        return Err(needed(format!("apt-get update failed ({update})")));
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| needed(format!("apt-get: {e}")))?;
    if !install.success() {
        return Err(needed(format!("apt-get install failed ({install})")));
    }
    Ok(())
}
