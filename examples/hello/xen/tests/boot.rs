//! Boots the hello-xen image on Xen 4.17 under QEMU (TCG) as Xen's PVH
//! dom0, through the project's harness (`cargo xtask xen dom0 IMAGE`), and
//! checks what it prints through `console_io` and how it exits.
//!
//! The test builds the image itself (`--profile kernel`, in a target
//! directory of its own under `CARGO_TARGET_TMPDIR`), and runs `cargo
//! xtask xen prepare` first, which downloads Xen's Debian packages once
//! into `target/xen-harness` and installs QEMU >= 10 from bookworm-backports
//! (Debian: `qemu-system-x86`, `cpio`, `gzip`). It prints a SKIP line when
//! the harness cannot be prepared because the Debian mirror is unreachable.

use mirage_kernel_host::xen::XenRun;
use mirage_kernel_host::{kernel_image, xen_harness};

#[test]
fn hello_greets_four_times_as_dom0_after_probing_xen_and_exits_zero() {
    let Some(xen) = xen_harness!() else { return };
    let XenRun { status, output } = xen.dom0(&kernel_image!(), &[]);
    assert_eq!(status, Some(0), "exit status; output:\n{output}");
    let probe = output.lines().find(|l| l.contains("xen probe:")).unwrap_or_else(|| panic!("no probe:\n{output}"));
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
    let greetings: Vec<&str> = output.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "output:\n{output}");
    let mut stamps = Vec::new();
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
        let stamp = line.split("] INFO").next().unwrap_or("").rsplit('[').next().unwrap_or("").trim();
        stamps.push(stamp.parse::<f64>().unwrap_or_else(|_| panic!("no timestamp in {line:?}")));
    }
    // hello sleeps until fixed deadlines one second apart; idling until
    // Xen's one-shot timer must not wake it early (no upper bound: TCG may be late).
    for (i, stamp) in stamps.iter().enumerate() {
        assert!(stamp - stamps[0] >= i as f64 - 0.01, "greeting {i}: {stamps:?}");
    }
}

#[test]
fn a_bad_command_line_is_a_usage_error_on_the_xen_console() {
    let Some(xen) = xen_harness!() else { return };
    let XenRun { status, output } = xen.dom0(&kernel_image!(), &["--", "--frobnicate"]);
    assert_eq!(status, Some(2), "output:\n{output}");
    assert!(output.contains("unknown kernel flag \"--frobnicate\""), "{output}");
    assert!(!output.contains("hello from"), "{output}");
}

#[test]
fn hello_greets_four_times_through_the_pv_console_ring_as_a_domu_and_powers_off() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(), &[]);
    let (status, output) = (run.status, &run.output);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    let probe = console.lines().find(|l| l.contains("xen probe:")).unwrap_or_else(|| panic!("no probe:\n{console}"));
    // A domU's toolstack gives it a console ring and a xenstore ring.
    assert!(probe.contains("Xen 4.17") && !probe.contains("console ring pfn 0x0 "), "{probe}");
    assert!(probe.contains("ref 8 granted, entry read back, ended, none in use"), "{probe}");
    assert!(probe.contains("notified and delivered through the upcall (vector "), "{probe}");
    // The xenstore step: the harness names the domain "guest" and gives it
    // a vbd and a vif; the values written are read back, the transaction
    // commits and the watch fires at once and then on the write under it.
    let store = console.lines().find(|l| l.contains("xenstore:")).unwrap_or_else(|| panic!("no xenstore:\n{console}"));
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
    let greetings: Vec<&str> = console.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "console:\n{console}");
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
    }
    assert!(output.lines().any(|l| l.starts_with("harness: ") && l.contains(" guest running")), "{output}");
    // on_crash = "preserve" keeps a crashed domain, which the harness then
    // reports as crashed: its absence means SHUTDOWN_poweroff.
    assert!(run.every_run_powered_off(), "the guest did not power off:\n{output}");
}
