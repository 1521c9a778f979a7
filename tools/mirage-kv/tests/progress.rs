//! `mirage-kv` on large sparse images: `fsck` prints progress lines (phase,
//! bytes done and total) to stderr while it works, skips the images' holes
//! (an 8 GiB image with a few written sectors checks in seconds), and says
//! nothing about progress on short work. Also: `fsck` reports a superblock
//! slot that mount skipped, instead of "clean".

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

mod common;

use common::{kv, TempDir};

fn ok(args: &[&str]) -> Output {
    let out = kv(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The progress lines of `phase` in `stderr`.
fn lines_of<'a>(stderr: &'a str, phase: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(&format!(": {phase}: "))).collect()
}

/// Files this large check in bounded time only because their holes are
/// not read: 8 GiB.
const LARGE: u64 = 8 << 30;

#[test]
fn fsck_of_a_large_sparse_logkv_image_reports_progress_and_skips_the_holes() {
    let tmp = TempDir::new("progress-logkv");
    let image = tmp.0.join("big.img");
    ok(&["format", s(&image), "--size", "8G"]);
    let value = tmp.0.join("value");
    std::fs::write(&value, b"hello").unwrap();
    ok(&["put", s(&image), "/greeting", s(&value)]);
    let allocated = std::fs::metadata(&image).map(|m| std::os::unix::fs::MetadataExt::blocks(&m)).unwrap();
    println!("{} bytes, {} of them allocated", LARGE, allocated * 512);

    let started = Instant::now();
    let out = ok(&["--progress", "0.001", "fsck", s(&image)]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("1 live keys") && stdout.ends_with("clean\n"), "{stdout}");
    // Mount and check each read the superblocks and the 4 GiB live half
    // (the holes as zeros); check also reads the 5-byte value again.
    let half = (LARGE - 1024) / 2;
    for (phase, total) in
        [("mounting: reading the live log", 1024 + half), ("checking every record and value", 1024 + half + 5)]
    {
        let lines = lines_of(&stderr, phase);
        assert!(!lines.is_empty(), "no progress of {phase:?}:\n{stderr}");
        for line in &lines {
            assert!(line.starts_with(&format!("mirage-kv: fsck {}: {phase}: read ", s(&image))), "{line}");
            assert!(line.contains(&format!(" of about {total} bytes (4.0 GiB) (")), "{line}");
        }
        let last = lines.last().unwrap();
        assert!(last.contains("(100%)") && last.ends_with(" s (done)"), "{phase}: {last}");
    }
    // Reading 8 GiB of holes would take minutes in a debug build; skipping
    // them takes a few seconds.
    assert!(elapsed < Duration::from_secs(120), "fsck of the sparse image took {elapsed:?}");
    assert!(
        std::fs::metadata(&image).map(|m| std::os::unix::fs::MetadataExt::blocks(&m)).unwrap() == allocated,
        "fsck allocated blocks of the image"
    );

    // The same with progress off, and on short work at the default interval.
    let out = ok(&["--progress", "0", "fsck", s(&image)]);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let small = tmp.0.join("small.img");
    ok(&["format", s(&small), "--size", "1M"]);
    let out = ok(&["fsck", s(&small)]);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A GNU tar header for a regular file (base-256 size when octal is too
/// short).
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 8u64.pow(11) {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"14524715400\0");
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn fsck_of_a_large_sparse_tar_reports_the_hashing_of_its_files() {
    let tmp = TempDir::new("progress-tar");
    let image = tmp.0.join("big.tar");
    // A small file, then one of 16 MiB that is a hole on the host (the
    // debug build hashes about 16 MB/s), the end-of-archive blocks, and a
    // hole to 8 GiB after them, which mount never reads.
    let hole_file: u64 = 16 << 20;
    let mut f = File::create(&image).unwrap();
    f.write_all(&tar_header("small.txt", 5)).unwrap();
    f.write_all(b"hello").unwrap();
    f.write_all(&[0; 507]).unwrap();
    f.write_all(&tar_header("dir/big.bin", hole_file)).unwrap();
    f.write_all_at(&[0; 1024], 1024 + 512 + hole_file).unwrap();
    f.set_len(LARGE).unwrap();
    drop(f);

    let started = Instant::now();
    let out = ok(&["--progress", "0.001", "fsck", s(&image)]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("tar archive: 3 entries") && stdout.ends_with("clean\n"), "{stdout}");
    let lines = lines_of(&stderr, "hashing every file");
    assert!(!lines.is_empty(), "no progress of the hashing:\n{stderr}");
    // Whole sectors are read: the 5-byte file takes one.
    let total = hole_file + 512;
    for line in &lines {
        assert!(line.contains(&format!(" of {total} bytes (16.0 MiB) (")), "{line}");
    }
    let last = lines.last().unwrap();
    assert!(last.contains(&format!(": read {total} bytes (16.0 MiB) of {total} bytes")), "{last}");
    assert!(last.contains("(100%)") && last.ends_with(" s (done)"), "{last}");
    assert!(elapsed < Duration::from_secs(120), "fsck of the sparse tar took {elapsed:?}");
    // Mount reads headers only: it reached the end-of-archive blocks, not
    // the 8 GiB end of the image.
    for line in lines_of(&stderr, "mounting: reading the archive's headers") {
        assert!(line.contains(" of 8589934592 bytes (8.0 GiB) ("), "{line}");
    }
}

#[test]
fn fsck_reports_a_superblock_slot_that_mount_skipped() {
    let tmp = TempDir::new("progress-slot");
    let image = tmp.0.join("store.img");
    ok(&["format", s(&image), "--size", "32K"]);
    let value = tmp.0.join("value");
    std::fs::write(&value, vec![7u8; 3000]).unwrap();
    // Rewrite a key until the store compacts: both slots then hold
    // superblocks (generations 2 and 3).
    for _ in 0..12 {
        ok(&["put", s(&image), "/k", s(&value)]);
    }
    let out = ok(&["fsck", s(&image)]);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.ends_with("clean\n") && !report.contains("generation 1,"), "{report}");
    // Damage the older slot: the store still mounts and reads, but fsck says
    // what it skipped and fails.
    let f = std::fs::OpenOptions::new().write(true).open(&image).unwrap();
    let generation = report.split_whitespace().nth(1).unwrap().trim_end_matches(',').parse::<u64>().unwrap();
    let older_slot = (generation - 1) % 2;
    f.write_all_at(&[0xff], older_slot * 512 + 30).unwrap();
    drop(f);
    assert_eq!(ok(&["cat", s(&image), "/k"]).stdout, vec![7u8; 3000]);
    let out = kv(&["fsck", s(&image)]);
    assert!(!out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(!report.contains("clean"), "{report}");
    assert!(
        report
            .contains(&format!("error: superblock slot in sector {older_slot} skipped: superblock checksum mismatch")),
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 problems found"));
}
