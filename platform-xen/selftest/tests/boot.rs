//! Boots the xen-selftest image on Xen 4.17 under QEMU (TCG) through the
//! project's harness (`cargo xtask xen dom0|domu IMAGE`): as Xen's PVH
//! dom0 (no toolstack, output through `console_io`) and as a domU of a
//! Linux dom0, whose toolstack gives it a console ring, a xenstore ring,
//! an 8 MiB disk `xvda` served by blkback and a vif. Checks the probe of
//! the hypervisor interfaces, the xenstore client and blkfront.
//!
//! The test builds the image itself (as `cargo mirage build -t xen` does,
//! in a target directory of its own under `CARGO_TARGET_TMPDIR`). It needs
//! the harness prepared in `target/xen-harness` by `cargo xtask xen
//! prepare` (which `cargo xtask test` runs first: it downloads Xen's
//! Debian packages once and installs QEMU >= 10 from bookworm-backports,
//! `cpio` and `gzip`); without it each test skips, or fails under CI
//! (`mirage_test_env`). A domU boot takes 1 to 3 minutes under TCG.

use mirage_kernel_host::xen::XenRun;
use mirage_kernel_host::{kernel_image, xen_harness};

/// The line of `text` that contains `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// The guest console of a domU run that powered off.
fn console_of(run: &XenRun) -> &str {
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    assert!(run.every_run_powered_off(), "the guest did not power off (it failed or hung):\n{output}");
    run.consoles().first().copied().unwrap_or_else(|| panic!("no guest console:\n{output}"))
}

#[test]
fn as_dom0_the_probe_reaches_every_interface_and_xenstore_is_absent() {
    let Some(xen) = xen_harness!() else { return };
    let XenRun { status, output } = xen.dom0(&kernel_image!(xen), &[]);
    assert_eq!(status, Some(0), "exit status; output:\n{output}");
    let probe = line_with(&output, "xen probe:");
    assert!(probe.contains("Xen 4.17"), "{probe}");
    // Delivered by the upcall vector's handler, not by polling.
    assert!(probe.contains("notified and delivered through the upcall (vector "), "{probe}");
    // The first grant takes the first reference after the 8 reserved ones;
    // Xen copies our page through it (dom0 knows its own id, 0).
    assert!(probe.contains("grant table: 1 of"), "{probe}");
    assert!(
        probe.contains("ref 8 granted, entry read back, copied through by GNTTABOP_copy, ended, none in use"),
        "{probe}"
    );
    // dom0 booted without a toolstack has neither ring.
    assert!(probe.contains("console ring pfn 0x0 port 0, xenstore ring pfn 0x0 port 0"), "{probe}");
    assert!(output.contains("xenstore: absent (this domain has no xenstore ring), going on without it"), "{output}");
}

#[test]
fn as_a_domu_the_probe_and_every_xenstore_operation_work() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &[]);
    let console = console_of(&run);
    let probe = line_with(console, "xen probe:");
    // A domU's toolstack gives it a console ring and a xenstore ring.
    assert!(probe.contains("Xen 4.17") && !probe.contains("console ring pfn 0x0 "), "{probe}");
    assert!(!probe.contains("xenstore ring pfn 0x0 "), "{probe}");
    assert!(probe.contains("ref 8 granted, entry read back, ended, none in use"), "{probe}");
    assert!(probe.contains("notified and delivered through the upcall (vector "), "{probe}");
    // The harness names the domain "guest" and gives it a vbd and a vif;
    // the values written are read back, the transaction commits and the
    // watch fires at once and then on the write under it.
    let store = line_with(console, "xenstore:");
    let domid = store.split("domid=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("");
    assert!(domid.parse::<u16>().is_ok_and(|d| d > 0), "domid {domid:?} in {store}");
    for part in [
        "name=guest ",
        "devices=[",
        "vbd=[\"51712\"]",
        "vif=[\"0\"]",
        "data/mirage-test read back",
        "transaction committed (count 1,",
        "watch fired on data/mirage-watch then data/mirage-watch/fired",
    ] {
        assert!(store.contains(part), "{part:?} not in {store}");
    }
    assert!(!console.contains("blkfront"), "no block step without -- block:\n{console}");
}

#[test]
fn as_a_domu_blkfront_reads_concurrently_and_close_gives_back_every_grant() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &["--", "--block", "disk", "--", "block"]);
    let console = console_of(&run);
    assert!(console.contains("--block disk: blkfront device/vbd/51712 connected"), "{console}");
    assert!(
        console.contains("blkfront device/vbd/51712: 16384 sectors of 512 bytes (8.0 MiB), read-write"),
        "{console}"
    );
    let line = line_with(console, "concurrent reads verified");
    let most = line.rsplit("at most ").next().and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<usize>().ok());
    assert!(most.is_some_and(|n| n > 1), "requests never overlapped: {line}");
    // "blkfront: closed; grants in use B before open, A after close"
    let line = line_with(console, "blkfront: closed;");
    let counts: Vec<u64> = line
        .split("grants in use ")
        .nth(1)
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(counts.len() == 2 && counts[0] == counts[1], "close left grants behind: {line}");
}
