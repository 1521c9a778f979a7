//! Runs the www binary on a TAP device in a network namespace the test
//! creates (and deletes), serving a tar archive made by GNU tar with
//! `--block htdocs=SITE.tar`: Linux's `curl` fetches a 10 MiB file from it
//! byte-exact and Linux's `ping` gets replies from its stack.
//!
//! The TAP interface is created persistent in the namespace beforehand and
//! the binary runs inside the namespace, so it attaches to that interface
//! while its kernel end already has the Linux address.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2), `curl` (curl), `ping`
//! (iputils-ping), `tar` (tar) and `timeout` (coreutils); without them the
//! test skips, or fails under CI (`mirage_test_env`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mirage_net_stack_linux_tests::{iface_name, missing, run_in_netns, KillOnDrop, Netns};
use mirage_test_env::require;

const OURS: &str = "10.87.0.2";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes no run of which repeats soon (so a misplaced segment shows).
fn content(len: usize) -> Vec<u8> {
    mirage_testkit::pattern(0x9e37_79b9_7f4a_7c15, len)
}

/// Makes `dir/site.tar` holding `index.html` and `big.bin` (`big`).
fn make_site(dir: &Path, big: &[u8]) -> PathBuf {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), b"<title>from the archive</title>\n").unwrap();
    std::fs::write(site.join("big.bin"), big).unwrap();
    let archive = dir.join("site.tar");
    let status = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&site).arg(".").status().unwrap();
    assert!(status.success(), "tar failed: {status}");
    archive
}

/// Polls the index page until www answers, for at most 20 s; panics
/// if the binary exits or never answers.
fn wait_until_serving(ns: &Netns, server: &mut KillOnDrop) {
    let url = format!("http://{OURS}:8080/");
    // Each pass is one attempt of at most 2 s.
    for _ in 0..10 {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("www exited with {status} before serving");
        }
        match run_in_netns(ns.name(), &["curl", "-sS", "--max-time", "2", &url], None, Duration::from_secs(3)) {
            Ok(page) => {
                assert_eq!(page, b"<title>from the archive</title>\n", "the index is not the archive's");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    panic!("www did not answer on {url} within 20 s");
}

#[test]
fn www_tap_serves_10_mib_from_a_tar_archive_and_answers_ping() {
    require!(missing(&[("curl", "curl"), ("ping", "iputils-ping"), ("tar", "tar"), ("timeout", "coreutils")]));
    let Some(ns) = Netns::new_or_skip("mirage-wwwtap") else { return };
    let dir = TempDir(std::env::temp_dir().join(format!("www-test-{}", std::process::id())));
    let big = content(10 << 20);
    let archive = make_site(&dir.0, &big);

    let iface = iface_name("w");
    ns.exec(&["ip", "tuntap", "add", "dev", &iface, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.87.0.1/24", "dev", &iface]).unwrap();
    ns.exec(&["ip", "link", "set", &iface, "up"]).unwrap();
    // `ip netns exec` execs the binary itself, so killing this child kills www.
    let mut server = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_www")])
            .args(["--net", &format!("net0=tap:{iface}"), "--ipv4", &format!("{OURS}/24")])
            .args(["--block", &format!("htdocs={}:ro", archive.display()), "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start www"),
    );
    wait_until_serving(&ns, &mut server);

    let url = format!("http://{OURS}:8080/big.bin");
    let got = run_in_netns(ns.name(), &["curl", "-sS", "--max-time", "60", &url], None, Duration::from_secs(70));
    let got = got.unwrap();
    assert_eq!(got.len(), big.len(), "curl got {} of {} bytes", got.len(), big.len());
    assert!(got == big, "curl's copy of big.bin differs from the archive's");

    let out =
        run_in_netns(ns.name(), &["ping", "-c", "3", "-i", "0.2", "-W", "2", OURS], None, Duration::from_secs(20));
    let out = String::from_utf8_lossy(&out.unwrap()).into_owned();
    assert!(out.contains("3 packets transmitted, 3 received"), "{out}");
    assert!(server.0.try_wait().unwrap().is_none(), "www exited during the test");
}
