//! Interoperation tests of `mirage-net-stack` against the Linux kernel: see `tests/`.
//!
//! This library holds what those tests share: running host commands,
//! checking for the tools a test needs (so it can skip, or fail under CI,
//! naming the Debian package to install: `mirage_test_env`), a network
//! namespace deleted however the test ends, a TAP device whose kernel end
//! lives in that namespace, and child processes killed when the test ends;
//! and [`FaultyNetwork`], which makes the path to the kernel lossy on our
//! side of the TAP device, for kernels without `tc netem`.
//!
//! Every test needs root and /dev/net/tun. The Debian packages the tests
//! use: iproute2 (`ip`, `tc`), iputils-ping (`ping`), dnsmasq-base
//! (`dnsmasq`), socat (`socat`), curl (`curl`), netcat-openbsd (`nc`),
//! coreutils (`timeout`).

pub mod faulty;
pub mod tcp_services;

pub use faulty::{DirectionCounts, FaultCounts, FaultyNetwork, NetemFaults};

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirage_platform_unix::tap::TapNetwork;

/// Runs a command and returns its standard output, or an error naming the
/// command with its standard error.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let (program, rest) = args.split_first().ok_or("no command given")?;
    let out = Command::new(program).args(rest).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `args` in namespace `ns` under `limit` (killed by `timeout`
/// after it, so coreutils' `timeout` must be installed), with `input` on
/// its stdin; returns its stdout, or an error with the command, its status
/// and its stderr. Blocks the calling thread.
pub fn run_in_netns(ns: &str, args: &[&str], input: Option<Vec<u8>>, limit: Duration) -> Result<Vec<u8>, String> {
    let secs = limit.as_secs().max(1).to_string();
    let argv: Vec<&str> =
        ["timeout", &secs, "ip", "netns", "exec", ns].into_iter().chain(args.iter().copied()).collect();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{argv:?}: {e}"))?;
    // A separate writer, since the command may echo while it reads: one
    // thread writing and reading both pipes could deadlock on full pipes.
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => Some(std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })),
        _ => None,
    };
    let out = child.wait_with_output().map_err(|e| format!("{argv:?}: {e}"))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        return Err(format!("{argv:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Whether `tool` is an executable file in a directory of `PATH`.
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// Why the test cannot run here, if it cannot: /dev/net/tun is absent or
/// one of `tools` (program, Debian package) is not installed. `ip`
/// (iproute2) is always needed. Give it to [`mirage_test_env::require!`].
pub fn missing(tools: &[(&str, &str)]) -> Option<String> {
    if !Path::new("/dev/net/tun").exists() {
        return Some(
            "/dev/net/tun is absent (the tun driver: a kernel with CONFIG_TUN, the device passed into a container)"
                .into(),
        );
    }
    mirage_test_env::missing_program("ip", "iproute2").or_else(|| mirage_test_env::missing_programs(tools))
}

/// A network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `prefix-PID` (unique per test process;
    /// use a different prefix per test).
    pub fn new(prefix: &str) -> Result<Netns, String> {
        let name = format!("{prefix}-{}", std::process::id());
        // A namespace left by a killed run of the same PID would make `add` fail.
        let _ = sh(&["ip", "netns", "del", &name]);
        sh(&["ip", "netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// [`Netns::new`] for a test: `None` when the namespace cannot be
    /// created (the tests need root), after [`mirage_test_env::skip`]: the
    /// test skips, or fails under CI.
    #[track_caller]
    pub fn new_or_skip(prefix: &str) -> Option<Netns> {
        match Netns::new(prefix) {
            Ok(ns) => Some(ns),
            Err(e) => {
                mirage_test_env::skip(format!("cannot create a network namespace (run the tests as root): {e}"));
                None
            }
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Runs a command inside the namespace (see [`sh`]).
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        sh(&[&self.prefix()[..], args].concat())
    }

    /// Opens TAP interface `iface` for our stack, moves its kernel end
    /// into the namespace with address `cidr` (e.g. `10.77.0.1/24`) and
    /// brings it up.
    pub fn tap(&self, iface: &str, cidr: &str) -> Result<TapNetwork, String> {
        let tap = TapNetwork::open(iface).map_err(|e| format!("opening TAP {iface}: {e}"))?;
        sh(&["ip", "link", "set", iface, "netns", &self.name])?;
        self.exec(&["ip", "addr", "add", cidr, "dev", iface])?;
        self.exec(&["ip", "link", "set", iface, "up"])?;
        Ok(tap)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// A child process killed (by its own PID) and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TAP interface name unique to this process and `tag` (at most 15
/// bytes, as Linux requires).
pub fn iface_name(tag: &str) -> String {
    let mut name = format!("m{tag}{}", std::process::id() % 100_000);
    name.truncate(15);
    name
}
