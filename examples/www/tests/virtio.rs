//! Boots the www example's virtio image under QEMU (TCG) on a TAP device inside a
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
//! The test builds the image itself (as `cargo mirage build -t virtio`
//! does, in a target directory under `CARGO_TARGET_TMPDIR`). It needs
//! root, /dev/net/tun, `qemu-system-x86_64` (Debian `qemu-system-x86`),
//! `ip` (iproute2), `curl`, `ping` (iputils-ping), `tar`, `timeout`
//! (coreutils) and, for the DHCP run, `dnsmasq` (dnsmasq-base); without one
//! it skips, or fails under CI (`mirage_test_env`), naming it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Guest, Machine, Qemu};
use mirage_net_stack_linux_tests::{iface_name, missing, KillOnDrop, Netns};
use mirage_test_env::require;

/// How long a boot may take to reach the point a test waits for: about
/// 5 s on an idle machine, much more under TCG on a loaded 2-core one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Why this test cannot run here, if it cannot.
fn cannot_run(tools: &[(&str, &str)]) -> Option<String> {
    missing_qemu().or_else(|| missing(&[&[("timeout", "coreutils")], tools].concat()))
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

/// Boots the image on `machine` inside `ns` with virtio-net on `tap`,
/// `disk` as a read-only virtio-blk device, and `append` as its command
/// line.
fn boot(ns: &Netns, machine: Machine, tap: &str, disk: Option<&Path>, append: &str) -> Guest {
    let mut qemu = Qemu::new(&kernel_image!(virtio), machine).rng().tap(tap).append(append).in_netns(ns.name());
    if let Some(disk) = disk {
        qemu = qemu.disk(disk, true);
    }
    qemu.spawn()
}

/// `curl` inside `ns`, bounded: the body of `url` written to `out`.
fn curl(ns: &Netns, url: &str, out: &Path) -> Result<String, String> {
    let out = out.to_str().expect("UTF-8 path");
    ns.exec(&["curl", "-sS", "--fail", "--max-time", "120", "-o", out, url])
}

/// 10 MiB that no simple bug reproduces (xorshift; a shifted or repeated
/// chunk reads differently).
fn big_file() -> Vec<u8> {
    mirage_testkit::pattern(0x9e37_79b9_7f4a_7c15, 10 << 20)
}

fn htdocs(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("htdocs").join(file)).expect("read htdocs")
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
    require!(cannot_run(&[("curl", "curl"), ("ping", "iputils-ping"), ("tar", "tar")]));
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
    let guest = boot(&ns, Machine::Microvm, &tap, Some(&archive), "--net net0 --ipv4 10.81.0.2/24 --block htdocs");
    guest.wait_for("serving HTTP on 0.0.0.0:8080", BOOT_TIMEOUT);

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
    require!(cannot_run(&[("curl", "curl"), ("dnsmasq", "dnsmasq-base")]));
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

    let guest = boot(&ns, Machine::Microvm, &tap, None, "--net net0");
    guest.wait_for("serving HTTP on", BOOT_TIMEOUT);
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
    require!(cannot_run(&[("curl", "curl"), ("ping", "iputils-ping")]));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let tap = iface_name("vq");
    let ns = namespace("mirage-vq35", &tap, "10.84.0.1/24");
    let guest = boot(&ns, Machine::Q35, &tap, None, "--net net0 --ipv4 10.84.0.2/24");
    guest.wait_for("serving HTTP on 0.0.0.0:8080", BOOT_TIMEOUT);
    assert!(guest.output().contains("virtio-net virtio:0 at PCI"), "{}", guest.output());
    let index = dir.path().join("index.out");
    curl(&ns, "http://10.84.0.2:8080/", &index).unwrap_or_else(|e| panic!("{e}\n{}", guest.output()));
    assert_eq!(std::fs::read(&index).unwrap(), htdocs("index.html"));
    assert_pings(&ns, "10.84.0.2", &guest);
}

#[test]
fn a_missing_net_flag_stops_the_kernel_with_a_message() {
    require!(cannot_run(&[]));
    let exit = Qemu::new(&kernel_image!(virtio), Machine::Microvm).run(BOOT_TIMEOUT);
    let (status, output) = (exit.code, exit.output);
    assert_eq!(status, Some(exit_code(1)), "{output}");
    assert!(output.contains("needs a network device named net0: pass --net net0"), "{output}");
}
