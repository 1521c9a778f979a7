//! Boots the www-virtio image under QEMU (TCG) on a TAP device inside a
//! network namespace the test creates (and deletes), and talks to it from
//! Linux in that namespace: `curl` fetches the index page and a 10 MiB
//! file (from a tar archive on a virtio-blk disk) byte-exact, `ping` gets
//! replies, a boot without `--ipv4` takes a lease from `dnsmasq`, and a
//! q35 boot (virtio-net-pci) serves too.
//!
//! The TAP interface is created persistent in the namespace with the Linux
//! address, and QEMU runs inside the namespace (`ip netns exec`), so it
//! opens that interface. Every wait is bounded; QEMU runs under `timeout`
//! as well and is killed when a test ends.
//!
//! The test builds the image itself (`cargo build -p www-virtio --profile
//! kernel`, in a target directory under `CARGO_TARGET_TMPDIR`). It needs
//! root, /dev/net/tun, `qemu-system-x86_64` (Debian `qemu-system-x86`),
//! `ip` (iproute2), `curl`, `ping` (iputils-ping), `tar`, `timeout`
//! (coreutils) and, for the DHCP run, `dnsmasq` (dnsmasq-base); without one
//! it prints SKIP and the reason.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mirage_net_stack_linux_tests::{iface_name, missing, KillOnDrop, Netns};

/// How long a boot may take to reach the point a test waits for: about
/// 5 s on an idle machine, much more under TCG on a loaded 2-core one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The bound QEMU runs under (`timeout`), in case the test process dies
/// without killing it.
const QEMU_LIFETIME_SECONDS: &str = "600";

fn qemu_available() -> bool {
    Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Why this test cannot run here, if it cannot.
fn cannot_run(tools: &[(&str, &str)]) -> Option<String> {
    if !qemu_available() {
        return Some("qemu-system-x86_64 not found (Debian package qemu-system-x86)".into());
    }
    missing(&[&[("timeout", "coreutils")], tools].concat())
}

macro_rules! require {
    ($tools:expr) => {
        if let Some(reason) = cannot_run($tools) {
            println!("SKIP: {reason}");
            return;
        }
    };
}

fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-images");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", "kernel", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo to build the kernel image");
        assert!(status.success(), "building the www-virtio image failed: {status}");
        target.join("kernel/www-virtio")
    })
}

/// A namespace with a persistent TAP interface `iface` holding the Linux
/// address `cidr`, up.
fn namespace(prefix: &str, iface: &str, cidr: &str) -> Netns {
    let ns = Netns::new(prefix).expect("create a network namespace");
    ns.exec(&["ip", "tuntap", "add", "dev", iface, "mode", "tap"]).expect("create the TAP interface");
    ns.exec(&["ip", "addr", "add", cidr, "dev", iface]).expect("address the TAP interface");
    ns.exec(&["ip", "link", "set", iface, "up"]).expect("bring the TAP interface up");
    ns
}

/// A running guest: QEMU inside a namespace, its serial output collected.
struct Guest {
    _qemu: KillOnDrop,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Guest {
    /// Boots the image on `machine` (`microvm` or `q35`) inside `ns` with
    /// virtio-net on `tap`, `disk` as a virtio-blk device, and `append` as
    /// its command line.
    fn boot(ns: &Netns, machine: &str, tap: &str, disk: Option<&Path>, append: &str) -> Guest {
        let pci = machine != "microvm";
        let suffix = if pci { "pci" } else { "device" };
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns.name(), "timeout", QEMU_LIFETIME_SECONDS, "qemu-system-x86_64"])
            .args(["-M", machine, "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot"])
            .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .args(["-device", &format!("virtio-rng-{suffix}")])
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
            .args(["-device", &format!("virtio-net-{suffix},netdev=n0")]);
        if let Some(disk) = disk {
            command
                .arg("-drive")
                .arg(format!("if=none,file={},format=raw,id=d0,readonly=on", disk.display()))
                .args(["-device", &format!("virtio-blk-{suffix},drive=d0")]);
        }
        command.arg("-kernel").arg(image()).args(["-append", append]);
        let mut qemu =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start qemu");
        let mut stdout = qemu.stdout.take().expect("stdout is piped");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        // Ends when QEMU's stdout closes, i.e. when QEMU is killed at the latest.
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("output lock").extend_from_slice(&chunk[..n]);
            }
        });
        Guest { _qemu: KillOnDrop(qemu), output }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("output lock")).into_owned()
    }

    /// Waits (at most [`BOOT_TIMEOUT`]) until the serial output holds
    /// `needle`; panics with the output otherwise.
    fn wait_for(&self, needle: &str) {
        let started = Instant::now();
        while !self.output().contains(needle) {
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "no {needle:?} within {BOOT_TIMEOUT:?}; serial output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `curl` inside `ns`, bounded: the body of `url` written to `out`.
fn curl(ns: &Netns, url: &str, out: &Path) -> Result<String, String> {
    let out = out.to_str().expect("UTF-8 path");
    ns.exec(&["curl", "-sS", "--fail", "--max-time", "120", "-o", out, url])
}

/// 10 MiB that no simple bug reproduces (xorshift; a shifted or repeated
/// chunk reads differently).
fn big_file() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..10 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn htdocs(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../htdocs").join(file)).expect("read htdocs")
}

/// Linux `ping` from `ns` to `address`: three replies expected.
fn assert_pings(ns: &Netns, address: &str, guest: &Guest) {
    let out = ns
        .exec(&["ping", "-c", "3", "-i", "0.3", "-W", "10", "-s", "1000", address])
        .unwrap_or_else(|e| panic!("ping {address} failed: {e}\nserial output:\n{}", guest.output()));
    assert!(out.contains("3 packets transmitted, 3 received"), "{out}");
}

#[test]
fn serves_the_index_and_10_mib_from_a_tar_disk_and_answers_ping() {
    require!(&[("curl", "curl"), ("ping", "iputils-ping"), ("tar", "tar")]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), htdocs("index.html")).unwrap();
    let big = big_file();
    std::fs::write(site.join("big.bin"), &big).unwrap();
    let archive = dir.path().join("site.tar");
    let status = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&site).arg(".").status().unwrap();
    assert!(status.success(), "tar failed: {status}");

    let tap = iface_name("vw");
    let ns = namespace("mirage-vwww", &tap, "10.81.0.1/24");
    let guest = Guest::boot(&ns, "microvm", &tap, Some(&archive), "--net net0 --ipv4 10.81.0.2/24 --block htdocs");
    guest.wait_for("serving HTTP on 0.0.0.0:8080");

    let index = dir.path().join("index.out");
    curl(&ns, "http://10.81.0.2:8080/", &index).unwrap_or_else(|e| panic!("{e}\n{}", guest.output()));
    assert_eq!(std::fs::read(&index).unwrap(), htdocs("index.html"), "the index page differs");

    let fetched = dir.path().join("big.out");
    curl(&ns, "http://10.81.0.2:8080/big.bin", &fetched).unwrap_or_else(|e| panic!("{e}\n{}", guest.output()));
    let got = std::fs::read(&fetched).unwrap();
    assert_eq!(got.len(), big.len(), "length of the 10 MiB file");
    assert!(got == big, "the 10 MiB file differs at byte {:?}", got.iter().zip(&big).position(|(a, b)| a != b));

    assert_pings(&ns, "10.81.0.2", &guest);
    assert!(!guest.output().contains("ERROR"), "{}", guest.output());
}

#[test]
fn takes_a_dhcp_lease_from_dnsmasq_and_serves() {
    require!(&[("curl", "curl"), ("dnsmasq", "dnsmasq-base")]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let tap = iface_name("vd");
    let ns = namespace("mirage-vdhcp", &tap, "10.82.0.1/24");
    let log = std::fs::File::create(dir.path().join("dnsmasq.log")).unwrap();
    let dnsmasq = Command::new("ip")
        .args(["netns", "exec", ns.name(), "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0"])
        .arg(format!("--interface={tap}"))
        .arg("--bind-interfaces")
        .arg("--dhcp-range=10.82.0.50,10.82.0.60,255.255.255.0,1h")
        .arg(format!("--dhcp-leasefile={}", dir.path().join("leases").display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dnsmasq");
    let _dnsmasq = KillOnDrop(dnsmasq);

    let guest = Guest::boot(&ns, "microvm", &tap, None, "--net net0");
    guest.wait_for("serving HTTP on");
    let output = guest.output();
    let lease = output.lines().find_map(|l| l.split("DHCP lease: ").nth(1)).expect("a lease line");
    let address = lease.split('/').next().unwrap().to_string();
    assert!(address.starts_with("10.82.0.") && lease.contains("from 10.82.0.1"), "{lease}");

    let hello = dir.path().join("hello.out");
    curl(&ns, &format!("http://{address}:8080/hello.txt"), &hello).unwrap_or_else(|e| panic!("{e}\n{output}"));
    assert_eq!(std::fs::read(&hello).unwrap(), htdocs("hello.txt"));
}

#[test]
fn serves_over_virtio_net_pci_on_q35() {
    require!(&[("curl", "curl"), ("ping", "iputils-ping")]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let tap = iface_name("vq");
    let ns = namespace("mirage-vq35", &tap, "10.84.0.1/24");
    let guest = Guest::boot(&ns, "q35", &tap, None, "--net net0 --ipv4 10.84.0.2/24");
    guest.wait_for("serving HTTP on 0.0.0.0:8080");
    assert!(guest.output().contains("virtio-net virtio:0 at PCI"), "{}", guest.output());
    let index = dir.path().join("index.out");
    curl(&ns, "http://10.84.0.2:8080/", &index).unwrap_or_else(|e| panic!("{e}\n{}", guest.output()));
    assert_eq!(std::fs::read(&index).unwrap(), htdocs("index.html"));
    assert_pings(&ns, "10.84.0.2", &guest);
}

#[test]
fn a_missing_net_flag_stops_the_kernel_with_a_message() {
    require!(&[]);
    // `timeout` bounds the run: reading the output ends when QEMU does.
    let mut qemu = Command::new("timeout")
        .args([QEMU_LIFETIME_SECONDS, "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-m", "128"])
        .args(["-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(image())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let mut output = String::new();
    qemu.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    let status = qemu.wait().unwrap();
    // Application error (1) through isa-debug-exit: 1 * 2 + 1.
    assert_eq!(status.code(), Some(3), "{output}");
    assert!(output.contains("needs a network device named net0: pass --net net0"), "{output}");
}
