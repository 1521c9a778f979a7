//! Boots the kv example's Xen image twice on the same disk as a domU of a
//! Linux dom0 (path B, `cargo xtask xen domu IMAGE --runs 2`): the first run finds the
//! harness's zeroed 8 MiB `xvda` blank and formats a store, the second
//! finds the boot counter the first left there through blkback.
//!
//! Builds the image and needs the prepared harness as
//! `examples/hello/tests/xen.rs` does; without it the test skips, or fails
//! under CI.

use mirage_kernel_host::{kernel_image, xen_harness};

#[test]
fn counts_boots_across_two_guest_runs_on_the_same_disk() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &["--runs", "2", "--", "--block", "store", "--", "/boot/count"]);
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    let runs = run.consoles();
    assert_eq!(runs.len(), 2, "output:\n{output}");
    assert!(runs[0].contains("formatted a new store"), "first run:\n{}", runs[0]);
    assert!(runs[0].contains("/boot/count is not set") && runs[0].contains("boot count: 1"), "first run:\n{}", runs[0]);
    assert!(runs[1].contains("mounted the store"), "second run:\n{}", runs[1]);
    assert!(runs[1].contains("/boot/count = \"1\"") && runs[1].contains("boot count: 2"), "second run:\n{}", runs[1]);
    assert!(run.every_run_powered_off(), "a run did not power off:\n{output}");
}
