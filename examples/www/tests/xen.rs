//! Boots the www example's Xen image as a domU of a Linux dom0 on Xen 4.17
//! under QEMU (TCG), through the project's harness (`cargo xtask xen domu
//! IMAGE --dom0-script FILE -- --ipv4 10.0.0.2/24`): the guest serves HTTP
//! over netfront, and dom0 (10.0.0.1/24 on the vif, netback) fetches the
//! index page with `nc` and pings the guest.
//!
//! The test builds the image itself (as `cargo mirage build -t xen` does,
//! in a target directory of its own under `CARGO_TARGET_TMPDIR`) and needs
//! the harness prepared by `cargo xtask xen prepare` (see
//! `examples/hello/tests/xen.rs`); without it the test skips, or fails
//! under CI. One boot takes a minute or more.

use std::path::{Path, PathBuf};

use mirage_kernel_host::{kernel_image, xen_harness};
use sha2::{Digest, Sha256};

/// The text between `start` and `end` in `text`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = from + text[from..].find(end)?;
    Some(&text[from..to])
}

fn htdocs(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("htdocs").join(file)).expect("read htdocs")
}

/// dom0's side: waits (30 tries, a second apart) for the guest to answer
/// on port 8080, prints the response's body as hex (the serial console
/// would turn its line ends into CRLF), then pings the guest and destroys
/// it. busybox's `wget` crashes in the harness's dom0, hence `nc`.
const DOM0_SCRIPT: &str = r#"
i=0
until printf 'GET / HTTP/1.0\r\nHost: 10.0.0.2\r\n\r\n' | nc -w 3 10.0.0.2 8080 >/index.http 2>/dev/null && [ -s /index.http ]; do
  i=$((i+1)); [ $i -ge 30 ] && { echo "no answer from 10.0.0.2:8080"; break; }
  sleep 1
done
echo "harness: at $(cut -d' ' -f1 /proc/uptime) first http answer"
head -n 1 /index.http
sed '1,/^\r$/d' /index.http >/index.body
echo "BODY BEGIN"; od -An -v -tx1 /index.body; echo "BODY END"
ping -c 3 -W 2 10.0.0.2
xl destroy guest
"#;

#[test]
fn dom0_fetches_the_index_page_over_netback_and_pings_the_guest() {
    let Some(xen) = xen_harness!() else { return };
    let script = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("www-dom0-script.sh");
    std::fs::write(&script, DOM0_SCRIPT).expect("write the dom0 script");
    let script = script.to_str().expect("UTF-8 path");
    let run = xen.domu(&kernel_image!(xen), &["--dom0-script", script, "--", "--ipv4", "10.0.0.2/24"]);
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("--net net0: netfront device/vif/0 connected, MAC 00:16:3e:00:00:01"), "{console}");
    assert!(console.contains("net0: 10.0.0.2/24"), "{console}");
    assert!(console.contains("serving HTTP on 0.0.0.0:8080"), "{console}");
    let script = run.dom0_script().unwrap_or_else(|| panic!("no dom0 script output:\n{output}"));
    assert!(script.contains("HTTP/1.1 200") || script.contains("HTTP/1.0 200"), "{script}");
    let hex = section(script, "BODY BEGIN", "BODY END").unwrap_or_else(|| panic!("no body:\n{script}"));
    let body: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("not a hex byte {b:?}:\n{script}")))
        .collect();
    assert_eq!(body, htdocs("index.html"), "the index page differs:\n{script}");
    assert!(script.contains("3 packets transmitted, 3 packets received"), "{script}");
}

/// dom0's side of the archive test: fetches `/big.bin` from the guest
/// (30 tries, a second apart) and prints the SHA-256 of the body.
const DOM0_ARCHIVE_SCRIPT: &str = r#"
i=0
until printf 'GET /big.bin HTTP/1.0\r\nHost: 10.0.0.2\r\n\r\n' | nc -w 5 10.0.0.2 8080 >/big.http 2>/dev/null && [ -s /big.http ]; do
  i=$((i+1)); [ $i -ge 30 ] && { echo "no answer from 10.0.0.2:8080"; break; }
  sleep 1
done
head -n 1 /big.http
sed '1,/^\r$/d' /big.http >/big.body
echo "SHA256 $(sha256sum /big.body | cut -d' ' -f1) BYTES $(wc -c </big.body)"
xl destroy guest
"#;

/// `len` bytes of xorshift output, so a misplaced block shows.
fn content(len: usize) -> Vec<u8> {
    mirage_testkit::pattern(0x9e37_79b9_7f4a_7c15, len)
}

#[test]
fn serves_a_tar_archive_from_its_disk_byte_exact() {
    let Some(xen) = xen_harness!() else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("site directory");
    let big = content(1 << 20);
    std::fs::write(site.join("big.bin"), &big).expect("write big.bin");
    std::fs::write(site.join("index.html"), "<h1>from the archive</h1>\n").expect("write index.html");
    let archive = dir.path().join("site.tar");
    let status = std::process::Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&site).arg(".").status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "tar failed: {status:?}");
    let script = dir.path().join("www-archive-script.sh");
    std::fs::write(&script, DOM0_ARCHIVE_SCRIPT).expect("write the dom0 script");
    let disk = format!("htdocs={}", archive.display());
    let run = xen.domu(
        &kernel_image!(xen),
        &["--dom0-script", script.to_str().expect("UTF-8 path"), "--disk", &disk, "--", "--ipv4", "10.0.0.2/24"],
    );
    let output = &run.output;
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("serving the tar archive on block device htdocs"), "{console}");
    let script = run.dom0_script().unwrap_or_else(|| panic!("no dom0 script output:\n{output}"));
    assert!(script.contains("HTTP/1.1 200"), "{script}");
    let expected = format!("SHA256 {} BYTES {}", hex(&Sha256::digest(&big)), big.len());
    assert!(script.contains(&expected), "expected {expected:?} in:\n{script}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
