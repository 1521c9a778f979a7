//! Boots the www-xen image as a domU of a Linux dom0 on Xen 4.17 under
//! QEMU (TCG), through the project's harness (`cargo xtask xen domu IMAGE
//! --dom0-script FILE -- -- --ipv4 10.0.0.2/24`): the guest serves HTTP
//! over netfront, and dom0 (10.0.0.1/24 on the vif, netback) fetches the
//! index page with `nc` and pings the guest.
//!
//! The test builds the image itself (`--profile kernel`, in a target
//! directory of its own under `CARGO_TARGET_TMPDIR`), and runs `cargo
//! xtask xen prepare` first (see `examples/hello/xen/tests/boot.rs`); it
//! prints a SKIP line when the harness cannot be prepared because the
//! Debian mirror is unreachable. One boot takes a minute or more.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `cargo xtask ARGS`, built in a target directory of the test's own.
fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--package", "xtask", "--target-dir"])
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xtask"))
        .arg("--")
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run cargo xtask")
}

/// Prepares the harness once; `Err` with the reason to skip if the Debian
/// mirror cannot be reached.
fn harness() -> &'static Result<(), String> {
    static HARNESS: OnceLock<Result<(), String>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let out = xtask(&["xen", "prepare"]);
        if out.status.success() {
            return Ok(());
        }
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if text.contains("apt-get download") || text.contains("apt-get update") || text.contains("Temporary failure") {
            return Err(format!("the Xen harness cannot download its Debian packages: {}", text.trim_end()));
        }
        panic!("cargo xtask xen prepare failed ({}):\n{text}", out.status);
    })
}

/// Builds the image once per test process and returns its path.
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
        assert!(status.success(), "building the www-xen image failed: {status}");
        target.join("kernel/www-xen")
    })
}

macro_rules! require_harness {
    () => {
        if let Err(reason) = harness() {
            println!("SKIP: {reason}");
            return;
        }
    };
}

/// Path B with a dom0 script: boots the image as a domU with `args` as
/// its command line while dom0 runs `script`; returns the harness's exit
/// status and output.
fn boot_domu_with(script: &str, args: &[&str]) -> (Option<i32>, String) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("www-dom0-script.sh");
    std::fs::write(&path, script).expect("write the dom0 script");
    let image = image().to_str().expect("UTF-8 path").to_string();
    let mut words = vec!["xen", "domu", image.as_str(), "--dom0-script", path.to_str().expect("UTF-8 path"), "--"];
    words.extend_from_slice(args);
    let out = xtask(&words);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The text between `start` and `end` in `text`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = from + text[from..].find(end)?;
    Some(&text[from..to])
}

fn htdocs(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../htdocs").join(file)).expect("read htdocs")
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
    require_harness!();
    let (status, output) = boot_domu_with(DOM0_SCRIPT, &["--", "--ipv4", "10.0.0.2/24"]);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let console = section(&output, "===== guest console =====", "===== end guest console =====")
        .unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("netfront: device/vif/0 connected, MAC 00:16:3e:00:00:01"), "{console}");
    assert!(console.contains("serving http on 10.0.0.2:8080"), "{console}");
    let script = section(&output, "===== dom0 script =====", "===== end dom0 script =====")
        .unwrap_or_else(|| panic!("no dom0 script output:\n{output}"));
    assert!(script.contains("HTTP/1.1 200") || script.contains("HTTP/1.0 200"), "{script}");
    let hex = section(script, "BODY BEGIN", "BODY END").unwrap_or_else(|| panic!("no body:\n{script}"));
    let body: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("not a hex byte {b:?}:\n{script}")))
        .collect();
    assert_eq!(body, htdocs("index.html"), "the index page differs:\n{script}");
    assert!(script.contains("3 packets transmitted, 3 packets received"), "{script}");
}
