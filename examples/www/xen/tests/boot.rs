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

use mirage_kernel_host::{kernel_image, xen_harness};

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
    let Some(xen) = xen_harness!() else { return };
    let script = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("www-dom0-script.sh");
    std::fs::write(&script, DOM0_SCRIPT).expect("write the dom0 script");
    let script = script.to_str().expect("UTF-8 path");
    let run = xen.domu(&kernel_image!(), &["--dom0-script", script, "--", "--", "--ipv4", "10.0.0.2/24"]);
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("netfront: device/vif/0 connected, MAC 00:16:3e:00:00:01"), "{console}");
    assert!(console.contains("serving http on 10.0.0.2:8080"), "{console}");
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
