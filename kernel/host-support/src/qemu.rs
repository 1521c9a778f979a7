//! Booting a kernel image under QEMU (TCG) from an integration test: the
//! machine, its virtio devices, an optional network namespace, a bound on
//! every wait, the serial output, and the guest's exit status.
//!
//! The guest ends QEMU through the `isa-debug-exit` device, which makes
//! QEMU exit with `status * 2 + 1` ([`exit_code`]). Needs
//! `qemu-system-x86_64` (Debian `qemu-system-x86`) and, for
//! [`Qemu::in_netns`], `ip` (iproute2) and `timeout` (coreutils); tests
//! give [`missing_qemu`] to `mirage_test_env::require!`, so that they skip
//! (fail under CI) when QEMU is absent.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a guest started in a namespace may live at most (`timeout`
/// kills it then), in case the test process dies without ending it.
pub const QEMU_LIFETIME: Duration = Duration::from_secs(600);

/// How long [`Guest`]'s drop waits for QEMU to end after asking it to,
/// before it kills it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the waits here look at QEMU and its output.
const POLL: Duration = Duration::from_millis(50);

/// QEMU's exit code when the guest ends with `status` through
/// `isa-debug-exit`.
pub const fn exit_code(status: u8) -> i32 {
    ((status as i32) << 1) | 1
}

/// Why QEMU cannot run here (`qemu-system-x86_64` is not installed), if
/// it cannot.
pub fn missing_qemu() -> Option<String> {
    let found = Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status();
    match found {
        Ok(status) if status.success() => None,
        _ => Some("qemu-system-x86_64 not found (Debian package qemu-system-x86)".into()),
    }
}

/// The machine QEMU emulates, which decides the virtio transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `microvm`: virtio-mmio devices.
    Microvm,
    /// `q35`: virtio-pci devices (and SeaBIOS output before the kernel's).
    Q35,
}

impl Machine {
    fn device(self, kind: &str) -> String {
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

/// A QEMU command line for a kernel image: 128 MiB, serial console on
/// stdout, `isa-debug-exit`, no default devices; add devices with the
/// methods, then [`Qemu::run`] or [`Qemu::spawn`].
#[derive(Debug)]
pub struct Qemu {
    machine: Machine,
    args: Vec<String>,
    append: String,
    netns: Option<String>,
    disks: usize,
}

impl Qemu {
    /// Boots `image` on `machine`, with an empty kernel command line.
    pub fn new(image: &Path, machine: Machine) -> Qemu {
        let args = [
            "-M",
            &machine.to_string(),
            "-accel",
            "tcg",
            "-m",
            "128",
            "-nodefaults",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel",
            &image.display().to_string(),
        ];
        Qemu { machine, args: args.map(String::from).into(), append: String::new(), netns: None, disks: 0 }
    }

    /// The kernel command line (`-append`).
    pub fn append(mut self, command_line: &str) -> Qemu {
        self.append = command_line.into();
        self
    }

    /// A virtio-rng device, the guest's entropy source (QEMU's default CPU
    /// model has no RDRAND).
    pub fn rng(self) -> Qemu {
        let device = self.machine.device("rng");
        self.device(&device)
    }

    /// The raw disk image `path` as the next virtio-blk device
    /// (`virtio:0`, `virtio:1`, ... in the order of the calls).
    pub fn disk(mut self, path: &Path, read_only: bool) -> Qemu {
        let id = format!("d{}", self.disks);
        self.disks += 1;
        let read_only = if read_only { ",readonly=on" } else { "" };
        self.args.push("-drive".into());
        self.args.push(format!("if=none,file={},format=raw,id={id}{read_only}", path.display()));
        let device = format!("{},drive={id}", self.machine.device("blk"));
        self.device(&device)
    }

    /// A virtio-net device on the existing host TAP interface `ifname`
    /// (in the namespace of [`Qemu::in_netns`], if given).
    pub fn tap(mut self, ifname: &str) -> Qemu {
        self.args.push("-netdev".into());
        self.args.push(format!("tap,id=n0,ifname={ifname},script=no,downscript=no"));
        let device = format!("{},netdev=n0", self.machine.device("net"));
        self.device(&device)
    }

    /// Runs QEMU inside the network namespace `name` (`ip netns exec`),
    /// under `timeout` [`QEMU_LIFETIME`].
    pub fn in_netns(mut self, name: &str) -> Qemu {
        self.netns = Some(name.into());
        self
    }

    fn device(mut self, device: &str) -> Qemu {
        self.args.push("-device".into());
        self.args.push(device.into());
        self
    }

    fn command(&self) -> Command {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, "timeout"]);
                command.arg(QEMU_LIFETIME.as_secs().to_string()).arg("qemu-system-x86_64");
                command
            }
            None => Command::new("qemu-system-x86_64"),
        };
        command.args(&self.args).args(["-append", &self.append]);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command
    }

    /// Starts QEMU and returns at once; the guest runs until it powers off
    /// or the [`Guest`] is dropped.
    ///
    /// # Panics
    ///
    /// When QEMU (or `ip`) cannot be started.
    pub fn spawn(self) -> Guest {
        let mut child = self.command().spawn().expect("start qemu-system-x86_64");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        // Ends when QEMU's stdout closes, i.e. when QEMU ends.
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(&chunk[..n]);
            }
        });
        Guest { child, output, reader: Some(reader), started: Instant::now(), description: self.append }
    }

    /// Boots and waits until QEMU exits, for at most `timeout`.
    ///
    /// # Panics
    ///
    /// When QEMU cannot be started, or has not exited within `timeout`
    /// (the message holds the serial output).
    pub fn run(self, timeout: Duration) -> Exit {
        let mut guest = self.spawn();
        let status = loop {
            if let Some(status) = guest.child.try_wait().expect("wait for qemu") {
                break status;
            }
            if guest.started.elapsed() > timeout {
                guest.stop();
                panic!(
                    "QEMU ({:?}) did not exit within {timeout:?}; serial output:\n{}",
                    guest.description,
                    guest.output()
                );
            }
            thread::sleep(POLL);
        };
        let ran = guest.started.elapsed();
        if let Some(reader) = guest.reader.take() {
            // QEMU has exited, so its stdout is closed and the reader ends.
            let _ = reader.join();
        }
        Exit { code: status.code(), output: guest.output(), ran }
    }
}

/// How a guest run by [`Qemu::run`] ended.
#[derive(Debug)]
pub struct Exit {
    /// QEMU's exit code ([`exit_code`] of the guest's status when it
    /// powered off through `isa-debug-exit`); `None` when a signal ended it.
    pub code: Option<i32>,
    /// All the serial output (invalid UTF-8 replaced).
    pub output: String,
    /// How long QEMU ran, on the host's clock.
    pub ran: Duration,
}

/// A running guest ([`Qemu::spawn`]): its serial output so far, and a wait
/// for a line of it. Dropping it ends QEMU.
#[derive(Debug)]
pub struct Guest {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    started: Instant,
    description: String,
}

impl Guest {
    /// The serial output so far (invalid UTF-8 replaced).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }

    /// Waits until the serial output holds `needle`, for at most `timeout`
    /// from the boot.
    ///
    /// # Panics
    ///
    /// When `timeout` passes first (the message holds the output).
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        while !self.output().contains(needle) {
            assert!(
                self.started.elapsed() < timeout,
                "no {needle:?} within {timeout:?}; serial output:\n{}",
                self.output()
            );
            thread::sleep(POLL);
        }
    }

    /// Ends QEMU and reaps it. Under `timeout` (in a namespace) the child
    /// is `timeout`, which a SIGKILL would leave QEMU running behind, so
    /// it is first asked with SIGTERM, which it passes on to QEMU.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let asked = Command::new("kill").args(["-s", "TERM", &self.child.id().to_string()]).status();
        if asked.is_ok_and(|status| status.success()) {
            let asked_at = Instant::now();
            while asked_at.elapsed() < STOP_GRACE {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(POLL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_isa_debug_exit() {
        assert_eq!(exit_code(0), 1);
        assert_eq!(exit_code(1), 3);
        assert_eq!(exit_code(101), 203);
        assert_eq!(exit_code(255), 511);
    }

    #[test]
    fn devices_follow_the_machine_and_disks_are_numbered() {
        let qemu = Qemu::new(Path::new("/img"), Machine::Q35)
            .rng()
            .disk(Path::new("/a.img"), false)
            .disk(Path::new("/b.img"), true)
            .tap("tap0")
            .append("--net net0");
        let command = qemu.command();
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(command.get_program(), "qemu-system-x86_64");
        for expected in [
            "q35",
            "virtio-rng-pci",
            "if=none,file=/a.img,format=raw,id=d0",
            "virtio-blk-pci,drive=d0",
            "if=none,file=/b.img,format=raw,id=d1,readonly=on",
            "virtio-blk-pci,drive=d1",
            "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "virtio-net-pci,netdev=n0",
            "--net net0",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
        }
        let microvm = Qemu::new(Path::new("/img"), Machine::Microvm).rng().in_netns("ns1").command();
        let args: Vec<String> = microvm.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(microvm.get_program(), "ip");
        assert_eq!(args[..6], ["netns", "exec", "ns1", "timeout", "600", "qemu-system-x86_64"]);
        assert!(args.iter().any(|a| a == "virtio-rng-device"), "{args:?}");
    }
}
