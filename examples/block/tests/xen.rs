//! Boots the block example's Xen image on Xen 4.17 under QEMU (TCG) as a
//! domU of a Linux dom0 (path B, `cargo xtask xen domu`), whose toolstack
//! gives it an 8 MiB zeroed disk `xvda` served by blkback, named `disk` on
//! the command line: the example writes its pattern over every sector
//! through blkfront, flushes, reads it all back and verifies it byte for
//! byte. (blkfront's own tests are `platform-xen/selftest`'s.)
//!
//! The test builds the image itself (as `cargo mirage build -t xen` does,
//! in a target directory of its own under `CARGO_TARGET_TMPDIR`) and needs
//! the prepared harness (see `examples/hello/tests/xen.rs`); without it
//! the test skips, or fails under CI.

use mirage_kernel_host::{kernel_image, xen_harness};

#[test]
fn the_block_example_verifies_the_whole_8_mib_xvda_through_blkback() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &["--", "--block", "disk"]);
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(
        console.contains("blkfront device/vbd/51712: 16384 sectors of 512 bytes (8.0 MiB), read-write"),
        "{console}"
    );
    // Every sector carries its number and the run's seed: a lost or
    // misdirected write fails verification with a message.
    assert!(console.contains("testing 16384 sectors of 512 bytes (8.0 MiB)"), "{console}");
    assert!(console.contains("wrote and flushed in"), "{console}");
    assert!(console.contains("all 16384 sectors are intact"), "{console}");
    assert!(run.every_run_powered_off(), "the guest did not power off:\n{output}");
}
