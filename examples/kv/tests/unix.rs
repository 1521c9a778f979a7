//! Runs the built `kv` binary as a Linux process on image files.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

fn kv(image: &Path, args: &[&str]) -> Output {
    let flag = format!("store={}", image.display());
    Command::new(env!("CARGO_BIN_EXE_kv")).args(["--block", &flag]).args(args).output().expect("run kv")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A zero-filled sparse file of `len` bytes in a fresh directory.
fn blank_image(len: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let path = dir.path().join("store.img");
    File::create(&path).and_then(|f| f.set_len(len)).expect("create image");
    (dir, path)
}

#[test]
fn two_runs_on_one_image_count_one_then_two() {
    let (_dir, image) = blank_image(1024 * 1024);
    let first = kv(&image, &[]);
    assert!(first.status.success(), "{}", describe(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("store: the device was blank: formatted a new store"), "{stdout}");
    assert!(stdout.contains("boot count: 1\n"), "{stdout}");

    let second = kv(&image, &["--", "/boot/count"]);
    assert!(second.status.success(), "{}", describe(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("store: mounted the store"), "{stdout}");
    assert!(stdout.contains("/boot/count = \"1\""), "{stdout}");
    assert!(stdout.contains("boot count: 2\n"), "{stdout}");
}

#[test]
fn an_image_holding_other_data_is_refused_and_left_alone() {
    let (_dir, image) = blank_image(256 * 1024);
    let mut data = std::fs::read(&image).expect("read image");
    data[4096..4096 + 11].copy_from_slice(b"precious!!!");
    std::fs::write(&image, &data).expect("write image");
    let out = kv(&image, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("not formatted over"), "{all}");
    assert_eq!(std::fs::read(&image).expect("read image"), data, "the image was written");
}
