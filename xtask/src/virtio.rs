//! `cargo xtask build APP --platform virtio` and `cargo xtask run APP
//! --platform virtio`: kernel images and QEMU.
//!
//! The image is `examples/APP/virtio` (package `APP-virtio`) built with the
//! `kernel` profile (BRIEF.md §6); it boots with
//!
//! ```text
//! qemu-system-x86_64 -M microvm -accel tcg -m 256 -nodefaults -nographic -no-reboot -serial stdio
//!     -device isa-debug-exit,iobase=0xf4,iosize=0x04 -device virtio-rng-device
//!     [-drive if=none,file=DISK,format=raw,id=d0 -device virtio-blk-device,drive=d0]
//!     -kernel IMAGE -append "KERNEL-ARGS"
//! ```
//!
//! (`--machine q35`: the same devices on PCI). The guest ends through
//! isa-debug-exit, which makes QEMU exit with `status * 2 + 1`; [`run`]
//! maps that back to the guest's status.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::{cargo, workspace_root, TaskError};

/// The machine QEMU emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// QEMU's microvm: virtio-mmio devices, no firmware.
    Microvm,
    /// A PC with PCIe (q35): virtio-pci devices, SeaBIOS.
    Q35,
}

/// Builds the image of `app` and returns its path.
pub fn build(app: &str) -> Result<PathBuf, TaskError> {
    let package = format!("{app}-virtio");
    let status = cargo()
        .args(["build", "--package", &package, "--profile", "kernel"])
        .status()
        .map_err(|e| format!("cannot start cargo to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!("building the {package} image failed ({status})"));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let image = target.join("kernel").join(&package);
    let size = std::fs::metadata(&image).map_err(|e| format!("the image {} is missing: {e}", image.display()))?.len();
    println!("{} ({} KiB)", image.display(), size.div_ceil(1024));
    Ok(image)
}

/// The QEMU command line booting `image` on `machine`.
pub fn qemu_command(image: &Path, machine: Machine, disk: Option<&Path>, kernel_args: &[String]) -> Command {
    let (name, blk, rng) = match machine {
        Machine::Microvm => ("microvm", "virtio-blk-device", "virtio-rng-device"),
        Machine::Q35 => ("q35", "virtio-blk-pci", "virtio-rng-pci"),
    };
    let mut command = Command::new("qemu-system-x86_64");
    command.args(["-M", name, "-accel", "tcg", "-m", "256", "-nodefaults", "-nographic", "-no-reboot"]).args([
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device",
        rng,
    ]);
    if let Some(disk) = disk {
        command.arg("-drive").arg(format!("if=none,file={},format=raw,id=d0", disk.display()));
        command.args(["-device", &format!("{blk},drive=d0")]);
    }
    command.arg("-kernel").arg(image).arg("-append").arg(kernel_args.join(" "));
    command
}

/// The guest's exit status from QEMU's: `status * 2 + 1` through
/// isa-debug-exit; anything else (0: QEMU quit another way, or a
/// failure of QEMU itself) is `None`.
pub fn guest_status(qemu_code: i32) -> Option<u8> {
    (qemu_code % 2 == 1 && (1..=511).contains(&qemu_code)).then(|| ((qemu_code - 1) / 2) as u8)
}

/// Builds `app` and boots it; returns the guest's exit status.
pub fn run(app: &str, machine: Machine, disk: Option<&Path>, kernel_args: &[String]) -> Result<ExitCode, TaskError> {
    if let Some(disk) = disk {
        if !disk.is_file() {
            return Err(format!("--disk {}: no such file (create one with `truncate -s 16M FILE`)", disk.display()));
        }
    }
    crate::apt::ensure(&["qemu-system-x86"])?;
    let image = build(app)?;
    let status = qemu_command(&image, machine, disk, kernel_args)
        .status()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    match status.code().and_then(guest_status) {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => Ok(ExitCode::from(code)),
        None => Err(format!("QEMU ended without the guest's exit status ({status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_statuses_decode() {
        assert_eq!(guest_status(1), Some(0));
        assert_eq!(guest_status(5), Some(2));
        assert_eq!(guest_status(203), Some(101));
        assert_eq!(guest_status(511), Some(255));
        assert_eq!(guest_status(0), None);
        assert_eq!(guest_status(2), None);
        assert_eq!(guest_status(-1), None);
    }

    #[test]
    fn the_qemu_command_attaches_the_disk_for_the_machine() {
        let args = ["--block".to_string(), "disk".to_string()];
        let command = qemu_command(Path::new("/img"), Machine::Q35, Some(Path::new("/d.img")), &args);
        let words: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = words.join(" ");
        assert!(joined.contains("-M q35"), "{joined}");
        assert!(joined.contains("-device virtio-blk-pci,drive=d0"), "{joined}");
        assert!(joined.contains("if=none,file=/d.img,format=raw,id=d0"), "{joined}");
        assert_eq!(words.last().map(String::as_str), Some("--block disk"));
        let command = qemu_command(Path::new("/img"), Machine::Microvm, None, &[]);
        let joined: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!joined.iter().any(|a| a.contains("virtio-blk")), "{joined:?}");
    }
}
