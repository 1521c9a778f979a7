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
//!     [-netdev tap,id=n0,ifname=IFACE,script=no,downscript=no -device virtio-net-device,netdev=n0]
//!     [-netdev user,id=n0,hostfwd=tcp:127.0.0.1:HOST-:GUEST -device virtio-net-device,netdev=n0]
//!     -kernel IMAGE -append "KERNEL-ARGS"
//! ```
//!
//! (`--machine q35`: the same devices on PCI). With `--tap IFACE` or
//! `--forward HOST:GUEST` the guest has a virtio-net device, and
//! `--net net0` is put in front of the kernel arguments unless they name a
//! `--net` device themselves. Under user networking (`--forward`) QEMU's
//! DHCP server gives the guest 10.0.2.15, so
//! `cargo xtask run www --platform virtio --forward 8080:8080` serves
//! `http://127.0.0.1:8080/` on the host. The guest ends through
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

/// How the guest's virtio-net device is connected, if it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct NetOptions {
    /// With `--platform virtio`: a virtio-net device on the host's TAP
    /// interface IFACE (create it first: `ip tuntap add dev IFACE mode tap`).
    #[arg(long, value_name = "IFACE", conflicts_with = "forward")]
    pub tap: Option<String>,
    /// With `--platform virtio`: a virtio-net device on QEMU's user
    /// networking (the guest gets 10.0.2.15 by DHCP), with host TCP port
    /// HOSTPORT on 127.0.0.1 forwarded to the guest's GUESTPORT. May be
    /// given more than once.
    #[arg(long, value_name = "HOSTPORT:GUESTPORT", value_parser = parse_forward)]
    pub forward: Vec<Forward>,
}

impl NetOptions {
    /// Whether the guest gets a network device.
    pub fn attached(&self) -> bool {
        self.tap.is_some() || !self.forward.is_empty()
    }
}

/// A TCP port forward from the host's loopback to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The port on 127.0.0.1.
    pub host: u16,
    /// The guest's port.
    pub guest: u16,
}

fn parse_forward(text: &str) -> Result<Forward, String> {
    let bad = || format!("{text:?}: expected HOSTPORT:GUESTPORT, two TCP ports from 1 to 65535 (e.g. 8080:8080)");
    let (host, guest) = text.split_once(':').ok_or_else(bad)?;
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
    Ok(Forward { host: port(host)?, guest: port(guest)? })
}

/// The kernel arguments with `--net net0` in front when the guest has a
/// network device and `args` name none.
fn with_net_flag(net: &NetOptions, args: &[String]) -> Vec<String> {
    let names_net = args.iter().take_while(|a| *a != "--").any(|a| a == "--net" || a.starts_with("--net="));
    let mut all = Vec::new();
    if net.attached() && !names_net {
        all.extend(["--net".to_string(), "net0".to_string()]);
    }
    all.extend(args.iter().cloned());
    all
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
pub fn qemu_command(
    image: &Path,
    machine: Machine,
    disk: Option<&Path>,
    net: &NetOptions,
    kernel_args: &[String],
) -> Command {
    let (name, blk, rng, nic) = match machine {
        Machine::Microvm => ("microvm", "virtio-blk-device", "virtio-rng-device", "virtio-net-device"),
        Machine::Q35 => ("q35", "virtio-blk-pci", "virtio-rng-pci", "virtio-net-pci"),
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
    let netdev = match (&net.tap, net.forward.as_slice()) {
        (Some(iface), _) => Some(format!("tap,id=n0,ifname={iface},script=no,downscript=no")),
        (None, []) => None,
        (None, forwards) => {
            let rules: String =
                forwards.iter().map(|f| format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest)).collect();
            Some(format!("user,id=n0{rules}"))
        }
    };
    if let Some(netdev) = netdev {
        command.arg("-netdev").arg(netdev).args(["-device", &format!("{nic},netdev=n0")]);
    }
    command.arg("-kernel").arg(image).arg("-append").arg(with_net_flag(net, kernel_args).join(" "));
    command
}

/// The guest's exit status from QEMU's: `status * 2 + 1` through
/// isa-debug-exit; anything else (0: QEMU quit another way, or a
/// failure of QEMU itself) is `None`.
pub fn guest_status(qemu_code: i32) -> Option<u8> {
    (qemu_code % 2 == 1 && (1..=511).contains(&qemu_code)).then(|| ((qemu_code - 1) / 2) as u8)
}

/// Builds `app` and boots it; returns the guest's exit status.
pub fn run(
    app: &str,
    machine: Machine,
    disk: Option<&Path>,
    net: &NetOptions,
    kernel_args: &[String],
) -> Result<ExitCode, TaskError> {
    if let Some(disk) = disk {
        if !disk.is_file() {
            return Err(format!("--disk {}: no such file (create one with `truncate -s 16M FILE`)", disk.display()));
        }
    }
    crate::apt::ensure(&["qemu-system-x86"])?;
    let image = build(app)?;
    if let Some(forward) = net.forward.first() {
        println!("forwarding 127.0.0.1:{} to the guest's port {} (QEMU user networking)", forward.host, forward.guest);
    }
    let status = qemu_command(&image, machine, disk, net, kernel_args)
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
        let none = NetOptions::default();
        let command = qemu_command(Path::new("/img"), Machine::Q35, Some(Path::new("/d.img")), &none, &args);
        let words: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = words.join(" ");
        assert!(joined.contains("-M q35"), "{joined}");
        assert!(joined.contains("-device virtio-blk-pci,drive=d0"), "{joined}");
        assert!(joined.contains("if=none,file=/d.img,format=raw,id=d0"), "{joined}");
        assert_eq!(words.last().map(String::as_str), Some("--block disk"));
        let command = qemu_command(Path::new("/img"), Machine::Microvm, None, &none, &[]);
        let joined: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!joined.iter().any(|a| a.contains("virtio-blk") || a.contains("netdev")), "{joined:?}");
    }

    fn words(command: &Command) -> Vec<String> {
        command.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn forwards_become_user_networking_and_name_net0() {
        let net =
            NetOptions { tap: None, forward: vec![parse_forward("8080:80").unwrap(), parse_forward("7:7").unwrap()] };
        let words = words(&qemu_command(Path::new("/img"), Machine::Microvm, None, &net, &[]));
        let joined = words.join(" ");
        assert!(
            joined.contains("-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:7-:7 -device virtio-net-device,netdev=n0"),
            "{joined}"
        );
        assert_eq!(words.last().map(String::as_str), Some("--net net0"));
    }

    #[test]
    fn a_tap_on_q35_is_virtio_net_pci_and_an_explicit_net_flag_is_kept() {
        let net = NetOptions { tap: Some("tap7".into()), forward: Vec::new() };
        let args = ["--net=lan=virtio:0".to_string(), "--".to_string(), "--net".to_string()];
        let words = words(&qemu_command(Path::new("/img"), Machine::Q35, None, &net, &args));
        let joined = words.join(" ");
        assert!(
            joined.contains("-netdev tap,id=n0,ifname=tap7,script=no,downscript=no -device virtio-net-pci,netdev=n0"),
            "{joined}"
        );
        assert_eq!(words.last().map(String::as_str), Some("--net=lan=virtio:0 -- --net"));
        // After `--` a `--net` is the application's, not a device flag.
        assert_eq!(with_net_flag(&net, &["--".into(), "--net".into()])[..2], ["--net", "net0"]);
    }

    #[test]
    fn malformed_forwards_are_refused_with_the_expected_form() {
        for bad in ["8080", "8080:", ":80", "0:80", "80:70000", "a:b", "80:80:80"] {
            let e = parse_forward(bad).unwrap_err();
            assert!(e.contains("HOSTPORT:GUESTPORT"), "{bad}: {e}");
        }
        assert_eq!(parse_forward("8080:8080"), Ok(Forward { host: 8080, guest: 8080 }));
    }
}
