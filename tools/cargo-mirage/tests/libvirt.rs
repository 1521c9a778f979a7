//! The libvirt domain `cargo mirage build -t virtio --tap IFACE` writes
//! boots under libvirt and serves: an application made by `cargo mirage
//! new`, its domain defined and started on `qemu:///system` (TCG), and its
//! greeting fetched with curl over the TAP interface.
//!
//! The TAP interface is on the host (libvirt's QEMU opens it there), on a
//! bridge with one end of a veth pair whose other end is in a network
//! namespace of the test's own (10.213.7.1/24): the client talks to the
//! guest (10.213.7.2/24, `--ipv4` on its command line) from there, so no
//! address of the host is involved. Everything is removed at the end,
//! also when the test fails.
//!
//! Runs as root with libvirt installed (`libvirt-daemon-system`,
//! `libvirt-clients`) and starts `virtlogd` and `libvirtd` when they are
//! not running (no init system does it in CI's container). Without the
//! tools it fails under CI (env `CI`) and skips elsewhere
//! (`mirage_test_env`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{bounded, fetch_until, succeed, text, App, BUILD_LIMIT};
use mirage_test_env::{missing_programs, require};

const URI: &str = "qemu:///system";
const GUEST: &str = "10.213.7.2";
const CLIENT: &str = "10.213.7.1/24";

/// How long libvirt may take for one command: its first start probes
/// QEMU's capabilities, which takes about a minute under TCG.
const VIRSH_LIMIT: Duration = Duration::from_secs(180);

/// How long the guest may take to answer once started.
const ANSWER_LIMIT: Duration = Duration::from_secs(120);

fn virsh(args: &[&str]) -> std::process::Output {
    bounded(Command::new("virsh").args(["-c", URI]).args(args), VIRSH_LIMIT)
}

/// Starts `virtlogd` and `libvirtd` unless libvirt answers already; waits
/// (bounded) until it does.
fn libvirt_up() {
    if virsh(&["version"]).status.success() {
        return;
    }
    for daemon in ["virtlogd", "libvirtd"] {
        let out = bounded(Command::new(daemon).arg("--daemon"), Duration::from_secs(30));
        assert!(out.status.success(), "cannot start {daemon}: {}", text(&out));
    }
    let started = Instant::now();
    loop {
        let out = virsh(&["version"]);
        if out.status.success() {
            return;
        }
        assert!(started.elapsed() < VIRSH_LIMIT, "libvirt does not answer on {URI}: {}", text(&out));
        sleep(Duration::from_millis(500));
    }
}

/// The network and the domain, removed when dropped.
struct Lab {
    tap: String,
    bridge: String,
    veth: String,
    netns: String,
    domain: String,
    copy: Option<PathBuf>,
}

impl Lab {
    fn ip(&self, args: &[&str]) {
        let out = bounded(Command::new("ip").args(args), Duration::from_secs(30));
        assert!(out.status.success(), "ip {}: {}", args.join(" "), text(&out));
    }

    /// Removes the domain if an earlier run left it, then the network.
    fn clean(&self) {
        let _ = virsh(&["destroy", &self.domain]);
        let _ = virsh(&["undefine", &self.domain]);
        for link in [&self.tap, &self.veth, &self.bridge] {
            let _ = bounded(Command::new("ip").args(["link", "del", link]), Duration::from_secs(30));
        }
        let _ = bounded(Command::new("ip").args(["netns", "del", &self.netns]), Duration::from_secs(30));
        if let Some(copy) = &self.copy {
            let _ = fs::remove_dir_all(copy);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Whether the user QEMU runs as (`libvirt-qemu`) can reach `path`: every
/// directory above it searchable by others, the file readable.
fn reachable_by_others(path: &Path) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(path) & 0o004 != 0 && path.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

#[test]
fn the_libvirt_domain_boots_and_serves_over_a_tap() {
    require!(missing_programs(&[
        ("virsh", "libvirt-clients"),
        ("libvirtd", "libvirt-daemon-system"),
        ("virtlogd", "libvirt-daemon-system"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ip", "iproute2"),
        ("curl", "curl"),
    ]));
    let id = std::process::id() % 100_000;
    let mut lab = Lab {
        tap: format!("mlv{id}t"),
        bridge: format!("mlv{id}b"),
        veth: format!("mlv{id}v"),
        netns: format!("cargo-mirage-libvirt-{id}"),
        domain: "greeter-libvirt".into(),
        copy: None,
    };
    libvirt_up();
    lab.clean();

    let app = App::new("greeter-libvirt");
    let built = succeed(
        &mut app.cargo_mirage(&["build", "-t", "virtio", "--tap", &lab.tap, "--", "--ipv4", &format!("{GUEST}/24")]),
        BUILD_LIMIT,
    );
    let image = app.target_dir.join("x86_64-unknown-linux-gnu/mirage-virtio/greeter-libvirt");
    let xml_path = image.with_extension("xml");
    let mut xml = fs::read_to_string(&xml_path).unwrap_or_else(|e| panic!("no domain XML ({e}):\n{built}"));
    assert!(xml.contains(&format!("<target dev='{}' managed='no'/>", lab.tap)), "{xml}");
    assert!(xml.contains(&format!("<cmdline>--ipv4 {GUEST}/24</cmdline>")), "{xml}");
    // QEMU runs as libvirt-qemu: where the image is out of its reach (a
    // private temporary directory), the domain boots a copy.
    let console = image.with_extension("console.log");
    if !reachable_by_others(&image) || !reachable_by_others(image.parent().unwrap_or(&image)) {
        let copy = std::env::temp_dir().join(format!("cargo-mirage-libvirt-{id}"));
        fs::create_dir_all(&copy).expect("create the copy's directory");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("open the copy's directory");
        fs::copy(&image, copy.join("image")).expect("copy the image");
        xml = xml
            .replace(&console.display().to_string(), &copy.join("console.log").display().to_string())
            .replace(&image.display().to_string(), &copy.join("image").display().to_string());
        lab.copy = Some(copy);
    }
    let console = lab.copy.as_ref().map(|c| c.join("console.log")).unwrap_or(console);
    let _ = fs::remove_file(&console);
    let xml_path = app.dir.join("domain.xml");
    fs::write(&xml_path, &xml).expect("write the domain XML");

    lab.ip(&["tuntap", "add", "dev", &lab.tap, "mode", "tap"]);
    lab.ip(&["link", "add", &lab.bridge, "type", "bridge"]);
    lab.ip(&["link", "set", &lab.tap, "master", &lab.bridge]);
    lab.ip(&["netns", "add", &lab.netns]);
    lab.ip(&["link", "add", &lab.veth, "type", "veth", "peer", "name", "eth0", "netns", &lab.netns]);
    lab.ip(&["link", "set", &lab.veth, "master", &lab.bridge]);
    for link in [&lab.bridge, &lab.tap, &lab.veth] {
        lab.ip(&["link", "set", link, "up"]);
    }
    lab.ip(&["-n", &lab.netns, "addr", "add", CLIENT, "dev", "eth0"]);
    lab.ip(&["-n", &lab.netns, "link", "set", "eth0", "up"]);
    lab.ip(&["-n", &lab.netns, "link", "set", "lo", "up"]);

    let defined = virsh(&["define", &xml_path.display().to_string()]);
    assert!(defined.status.success(), "virsh define refused the domain: {}\n{xml}", text(&defined));
    let started = virsh(&["start", &lab.domain]);
    assert!(started.status.success(), "virsh start failed: {}", text(&started));
    let body = fetch_until(Some(&lab.netns), &format!("http://{GUEST}:8080/"), ANSWER_LIMIT, None);
    let log = fs::read_to_string(&console).unwrap_or_default();
    assert_eq!(body, "hello from greeter-libvirt\n", "console:\n{log}");
    assert!(log.contains(&format!("net0: {GUEST}/24")), "console:\n{log}");
    let destroyed = virsh(&["destroy", &lab.domain]);
    assert!(destroyed.status.success(), "virsh destroy failed: {}", text(&destroyed));
    let undefined = virsh(&["undefine", &lab.domain]);
    assert!(undefined.status.success(), "virsh undefine failed: {}", text(&undefined));
}
