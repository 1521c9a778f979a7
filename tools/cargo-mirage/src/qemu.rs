//! QEMU for a virtio image: the command line, and the guest's exit status.
//!
//! ```text
//! qemu-system-x86_64 -M microvm -accel tcg -m 256 -nodefaults -nographic -no-reboot -serial stdio
//!     -device isa-debug-exit,iobase=0xf4,iosize=0x04 -device virtio-rng-device
//!     [-drive if=none,file=DISK,format=raw,id=dN -device virtio-blk-device,drive=dN]...
//!     [-netdev tap,id=n0,ifname=IFACE,script=no,downscript=no -device virtio-net-device,netdev=n0]
//!     [-netdev user,id=n0,hostfwd=tcp:127.0.0.1:HOST-:GUEST... -device virtio-net-device,netdev=n0]
//!     -kernel IMAGE -append "--block NAME=virtio:N... ARGS"
//! ```
//!
//! [`Machine::Q35`] puts the same devices on PCI (`virtio-*-pci`). Each
//! disk is the next virtio-blk device and is named on the kernel command
//! line with `--block NAME=virtio:N`, in front of the caller's arguments
//! (which may hold `--` and the application's own). Under user
//! networking ([`Network::User`]) QEMU's DHCP server gives the guest
//! 10.0.2.15; without `--net` the application's stack takes the first
//! network device, and without `--ipv4` it asks DHCP. Always TCG: no KVM
//! is assumed.
//!
//! The guest ends through `isa-debug-exit`, which makes QEMU exit with
//! `status * 2 + 1`; [`guest_status`] maps it back.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::{block_flags, Disk, Error, ErrorKind};

/// The QEMU program.
pub const QEMU: &str = "qemu-system-x86_64";

/// The Debian package that has it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// The guest's memory when none is given, in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 256;

/// The machine QEMU emulates, which decides the virtio transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Machine {
    /// QEMU's microvm: virtio-mmio devices, no firmware (the fastest boot).
    #[default]
    Microvm,
    /// A PC with PCIe (q35): virtio-pci devices, SeaBIOS.
    Q35,
}

impl Machine {
    /// QEMU's device of `kind` (`blk`, `net`, `rng`) for this machine.
    pub fn device(self, kind: &str) -> String {
        match self {
            Machine::Microvm => format!("virtio-{kind}-device"),
            Machine::Q35 => format!("virtio-{kind}-pci"),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        })
    }
}

/// A TCP port forward from the host's loopback to the guest:
/// `HOSTPORT:GUESTPORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Forward {
    /// The port on 127.0.0.1.
    pub host: u16,
    /// The guest's port.
    pub guest: u16,
}

impl FromStr for Forward {
    type Err = Error;

    fn from_str(text: &str) -> Result<Forward, Error> {
        let bad = || {
            Error::new(
                ErrorKind::BadArgument,
                format!(
                    "--forward {text:?}: expected HOSTPORT:GUESTPORT, two TCP ports from 1 to 65535 (e.g. 8080:8080)"
                ),
            )
        };
        let (host, guest) = text.split_once(':').ok_or_else(bad)?;
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        Ok(Forward { host: port(host)?, guest: port(guest)? })
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.guest)
    }
}

/// How the guest's virtio-net device is connected, if it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// No network device.
    #[default]
    None,
    /// On the host's TAP interface (create it first: `ip tuntap add dev
    /// IFACE mode tap`).
    Tap(String),
    /// On QEMU's user networking (DHCP gives 10.0.2.15), with TCP ports
    /// of 127.0.0.1 forwarded to the guest.
    User(Vec<Forward>),
}

/// A QEMU run of a virtio image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The machine.
    pub machine: Machine,
    /// The guest's memory in MiB.
    pub memory_mib: u32,
    /// Raw disk images, `virtio:0`, `virtio:1`, ... in this order.
    pub disks: Vec<Disk>,
    /// The network device.
    pub network: Network,
}

impl Default for Options {
    fn default() -> Options {
        Options { machine: Machine::Microvm, memory_mib: DEFAULT_MEMORY_MIB, disks: Vec::new(), network: Network::None }
    }
}

/// Fails with what to install when QEMU is not there.
pub fn check_installed() -> Result<(), Error> {
    let found = Command::new(QEMU).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    match found {
        Ok(status) if status.success() => Ok(()),
        _ => Err(Error::new(
            ErrorKind::MissingTool,
            format!("{QEMU} is not installed: install it with `apt-get install {QEMU_PACKAGE}` (Debian, Ubuntu)"),
        )),
    }
}

/// The kernel command line: `--block NAME=virtio:N` for each disk, then
/// `args`, joined by spaces. An argument with white space cannot be
/// passed and is refused.
pub fn kernel_command_line(disks: &[Disk], args: &[String]) -> Result<String, Error> {
    let mut words = block_flags(disks, |i, _| format!("virtio:{i}"));
    words.extend(args.iter().cloned());
    command_line(&words)
}

/// `words` joined by spaces, refusing empty words and words with white
/// space (a kernel command line has no quoting).
pub fn command_line(words: &[String]) -> Result<String, Error> {
    if let Some(bad) = words.iter().find(|w| w.is_empty() || w.chars().any(char::is_whitespace)) {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!("{bad:?}: a kernel command line is split at white space, so no argument may be empty or hold any"),
        ));
    }
    Ok(words.join(" "))
}

/// QEMU's `-drive` for `path` (commas in the path doubled).
fn drive(path: &Path, id: &str) -> String {
    format!("if=none,file={},format=raw,id={id}", path.display().to_string().replace(',', ",,"))
}

/// The QEMU command booting `image` with `options` and the kernel
/// arguments `args` (see the [module documentation](self)); standard
/// input, output and error are left to the caller.
pub fn command(image: &Path, options: &Options, args: &[String]) -> Result<Command, Error> {
    let machine = options.machine;
    let mut command = Command::new(QEMU);
    command
        .args(["-M", &machine.to_string(), "-accel", "tcg", "-m", &options.memory_mib.to_string()])
        .args(["-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-device", &machine.device("rng")]);
    for (i, disk) in options.disks.iter().enumerate() {
        let id = format!("d{i}");
        command.arg("-drive").arg(drive(&disk.path, &id));
        command.args(["-device", &format!("{},drive={id}", machine.device("blk"))]);
    }
    let netdev = match &options.network {
        Network::None => None,
        Network::Tap(iface) => Some(format!("tap,id=n0,ifname={iface},script=no,downscript=no")),
        Network::User(forwards) => {
            let rules: String =
                forwards.iter().map(|f| format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest)).collect();
            Some(format!("user,id=n0{rules}"))
        }
    };
    if let Some(netdev) = netdev {
        command.arg("-netdev").arg(netdev).args(["-device", &format!("{},netdev=n0", machine.device("net"))]);
    }
    command.arg("-kernel").arg(image).arg("-append").arg(kernel_command_line(&options.disks, args)?);
    Ok(command)
}

/// The guest's exit status from QEMU's: `status * 2 + 1` through
/// isa-debug-exit; anything else (0: QEMU quit another way, or a failure
/// of QEMU itself) is `None`.
pub fn guest_status(qemu_code: i32) -> Option<u8> {
    (qemu_code % 2 == 1 && (1..=511).contains(&qemu_code)).then(|| ((qemu_code - 1) / 2) as u8)
}

/// QEMU's exit code when the guest ends with `status` through
/// isa-debug-exit.
pub const fn exit_code(status: u8) -> i32 {
    ((status as i32) << 1) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{has_pair, words};

    #[test]
    fn guest_statuses_decode() {
        assert_eq!(guest_status(1), Some(0));
        assert_eq!(guest_status(5), Some(2));
        assert_eq!(guest_status(203), Some(101));
        assert_eq!(guest_status(exit_code(255)), Some(255));
        assert_eq!(guest_status(0), None);
        assert_eq!(guest_status(2), None);
        assert_eq!(guest_status(-1), None);
    }

    #[test]
    fn disks_are_attached_in_order_and_named_before_the_arguments() {
        let options = Options {
            machine: Machine::Q35,
            disks: vec![Disk::parse("data=/d,1.img").unwrap(), Disk::parse("logs=/l.img").unwrap()],
            ..Options::default()
        };
        let args = ["-l".to_string(), "debug".to_string(), "--".to_string(), "--port".to_string(), "1".to_string()];
        let words = words(&command(Path::new("/img"), &options, &args).unwrap());
        assert!(has_pair(&words, "-M", "q35") && has_pair(&words, "-accel", "tcg"), "{words:?}");
        assert!(has_pair(&words, "-drive", "if=none,file=/d,,1.img,format=raw,id=d0"), "{words:?}");
        assert!(
            has_pair(&words, "-device", "virtio-blk-pci,drive=d1") && has_pair(&words, "-device", "virtio-rng-pci")
        );
        assert_eq!(
            words.last().map(String::as_str),
            Some("--block data=virtio:0 --block logs=virtio:1 -l debug -- --port 1")
        );
        assert!(!words.iter().any(|w| w.contains("netdev")), "{words:?}");
    }

    #[test]
    fn forwards_become_user_networking_and_a_tap_a_tap_netdev() {
        let forwards = vec!["8080:80".parse().unwrap(), "7:7".parse().unwrap()];
        let options = Options { network: Network::User(forwards), ..Options::default() };
        let words = words(&command(Path::new("/img"), &options, &[]).unwrap());
        assert!(
            has_pair(&words, "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:7-:7"),
            "{words:?}"
        );
        assert!(has_pair(&words, "-device", "virtio-net-device,netdev=n0") && has_pair(&words, "-M", "microvm"));
        assert!(has_pair(&words, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert_eq!(words.last().map(String::as_str), Some(""));
        let options = Options { network: Network::Tap("tap7".into()), ..Options::default() };
        let tap = crate::build::words(&command(Path::new("/img"), &options, &[]).unwrap());
        assert!(has_pair(&tap, "-netdev", "tap,id=n0,ifname=tap7,script=no,downscript=no"), "{tap:?}");
    }

    #[test]
    fn malformed_forwards_and_arguments_are_refused_with_the_expected_form() {
        for bad in ["8080", "8080:", ":80", "0:80", "80:70000", "a:b", "80:80:80"] {
            let e = bad.parse::<Forward>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadArgument);
            assert!(e.message().contains("HOSTPORT:GUESTPORT"), "{bad}: {e}");
        }
        assert_eq!("8080:8080".parse::<Forward>(), Ok(Forward { host: 8080, guest: 8080 }));
        let e = kernel_command_line(&[], &["a b".to_string()]).unwrap_err();
        assert!(e.message().contains("white space"), "{e}");
    }
}
