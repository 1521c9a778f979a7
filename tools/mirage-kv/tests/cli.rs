//! The mirage-kv binary end to end: build images of both formats from a
//! directory, read them back byte-exact, put, rm, fsck, and its errors.
//! GNU tar reads the tar image as well: without it that test skips, or
//! fails under CI (`mirage_test_env`).

use std::path::Path;
use std::process::Command;

use mirage_test_env::{missing_program, skip};

mod common;

use common::{kv, TempDir};

fn ok(args: &[&str]) -> Vec<u8> {
    let out = kv(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn populate(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let long = format!("{}/{}.bin", "l".repeat(80), "n".repeat(60));
    let files = vec![
        ("index.html".to_string(), b"<h1>hi</h1>\n".to_vec()),
        ("empty".to_string(), Vec::new()),
        ("css/site/main.css".to_string(), (0..5000u32).map(|i| (i % 253) as u8).collect()),
        (long, vec![0xab; 1025]),
    ];
    for (k, v) in &files {
        let p = dir.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }
    files
}

#[test]
fn build_then_read_back_both_formats() {
    let tmp = TempDir::new("cli-build");
    let src = tmp.0.join("src");
    let files = populate(&src);
    for format in ["logkv", "tar"] {
        let image = tmp.0.join(format!("img.{format}"));
        ok(&["build", s(&image), "--from", s(&src), "--format", format]);
        for (k, v) in &files {
            assert_eq!(&ok(&["cat", s(&image), k]), v, "{format} {k}");
        }
        let root = String::from_utf8(ok(&["ls", s(&image)])).unwrap();
        let names: Vec<&str> = root.lines().collect();
        assert_eq!(names, ["css/", "empty\t0", "index.html\t12", &format!("{}/", "l".repeat(80))], "{format}");
        assert_eq!(String::from_utf8(ok(&["ls", s(&image), "css/site"])).unwrap(), "main.css\t5000\n");
        let report = String::from_utf8(ok(&["fsck", s(&image)])).unwrap();
        assert!(report.contains("clean"), "{format}: {report}");
    }
    // GNU tar reads our tar image too.
    if let Some(reason) = missing_program("tar", "tar") {
        return skip(format!("{reason}: our tar image was not checked with GNU tar"));
    }
    let list = Command::new("tar").args(["-t", "-f", s(&tmp.0.join("img.tar"))]).output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert_eq!(String::from_utf8(list.stdout).unwrap().lines().count(), files.len());
}

#[test]
fn format_put_cat_rm_and_fsck() {
    let tmp = TempDir::new("cli-put");
    let image = tmp.0.join("store.img");
    ok(&["format", s(&image), "--size", "1M"]);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1 << 20);
    let value = tmp.0.join("value");
    std::fs::write(&value, b"some bytes\0\xff").unwrap();
    ok(&["put", s(&image), "/etc/motd", s(&value)]);
    assert_eq!(ok(&["cat", s(&image), "etc/motd"]), b"some bytes\0\xff");
    ok(&["rm", s(&image), "etc"]);
    assert_eq!(ok(&["ls", s(&image)]), b"");
    assert!(String::from_utf8(ok(&["fsck", s(&image)])).unwrap().contains("clean"));
}

#[test]
fn failures_exit_non_zero_with_a_message() {
    let tmp = TempDir::new("cli-errors");
    let image = tmp.0.join("store.img");
    ok(&["format", s(&image), "--size", "64K"]);
    for (args, needle) in [
        (vec!["cat", s(&image), "missing"], "no such key"),
        (vec!["cat", s(&image), "a/../b"], "'..'"),
        (vec!["ls", "/nonexistent/image"], "cannot open"),
        (vec!["format", s(&image), "--size", "lots"], "not a number"),
        (vec!["rm", s(&image), "nothing"], "no such key"),
    ] {
        let out = kv(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A tar image refuses writes; garbage is not a store.
    let tar = tmp.0.join("x.tar");
    let src = tmp.0.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(&["build", s(&tar), "--from", s(&src), "--format", "tar"]);
    let out = kv(&["put", s(&tar), "g", s(&src.join("f"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    std::fs::write(&tar, vec![0x41; 4096]).unwrap();
    let out = kv(&["ls", s(&tar)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tar header at byte 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
