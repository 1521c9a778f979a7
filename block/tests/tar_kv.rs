//! TarKv against archives written by GNU tar (Debian package `tar`), in
//! its gnu, pax and ustar formats: long names, nested and empty
//! directories, empty files, a symlink; read back byte-exact. Without GNU
//! tar the tests skip, or fail under CI (`mirage_test_env`).

mod kv_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use futures::executor::block_on;
use kv_support::{dump, key};
use mirage_block::{MemBlock, TarKv};
use mirage_test_env::require;
use mirage_types::kv::{EntryKind, Error as _, ErrorKind, KvRead};
use mirage_types::time::PosixTime;

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mirage-tar-kv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why GNU tar cannot be run here, if it cannot.
fn missing_gnu_tar() -> Option<&'static str> {
    match Command::new("tar").arg("--version").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("GNU tar") => None,
        _ => Some("GNU tar is not installed (Debian package tar)"),
    }
}

/// The tree the archives are made from, as key path -> contents.
fn tree() -> BTreeMap<String, Vec<u8>> {
    let long_dir = "d".repeat(60);
    let long_file = format!("{}.txt", "f".repeat(70));
    let mut t = BTreeMap::new();
    t.insert("hello.txt".to_string(), b"hello, world\n".to_vec());
    t.insert("empty".to_string(), Vec::new());
    t.insert("a/b/c/deep.bin".to_string(), (0..70_000u32).map(|i| (i % 251) as u8).collect());
    t.insert(format!("{long_dir}/{long_file}"), b"long name".to_vec());
    t.insert(format!("{long_dir}/{long_dir}/{long_file}"), vec![9; 513]);
    t
}

fn populate(dir: &Path) {
    for (path, data) in tree() {
        let p = dir.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("hello.txt", dir.join("link")).unwrap();
}

/// Archives `dir` with GNU tar in `format`, padded to whole 512-byte sectors.
fn archive(dir: &Path, format: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-c", "-f", "-", &format!("--format={format}"), "--mtime=@1600000000", "--sort=name", "-C"])
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut image = out.stdout;
    image.resize(image.len().div_ceil(512) * 512, 0);
    image
}

#[test]
fn gnu_pax_and_ustar_archives_read_back_byte_exact() {
    require!(missing_gnu_tar());
    let dir = TempDir::new("formats");
    populate(&dir.0);
    for format in ["gnu", "pax", "ustar"] {
        // Every name here fits ustar's 155-byte prefix plus 100-byte name,
        // so all three formats hold the whole tree.
        let expected = tree();
        let image = archive(&dir.0, format);
        let store = block_on(TarKv::mount(MemBlock::read_only(512, image).unwrap()))
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        block_on(async {
            assert_eq!(dump(&store).await, expected, "{format}");
            assert_eq!(store.stats().skipped, 1, "{format}: the symlink is skipped");
            assert_eq!(store.exists(&key("empty-dir")).await.unwrap(), Some(EntryKind::Dictionary));
            assert_eq!(store.list(&key("empty-dir")).await.unwrap(), vec![]);
            assert_eq!(store.exists(&key("link")).await.unwrap(), None);
            let t = PosixTime::new(1_600_000_000, 0).unwrap();
            assert_eq!(store.last_modified(&key("a/b")).await.unwrap(), t);
            assert_eq!(store.size(&key("a/b/c/deep.bin")).await.unwrap(), 70_000);
            assert_eq!(
                store.get_partial(&key("a/b/c/deep.bin"), 1000, 3).await.unwrap(),
                &[(1000 % 251) as u8, (1001 % 251) as u8, (1002 % 251) as u8][..]
            );
            assert_eq!(store.get(&key("a/b")).await.unwrap_err().kind(), ErrorKind::NotAValue);
            assert_eq!(store.get(&key("hello.txt/x")).await.unwrap_err().kind(), ErrorKind::NotADictionary);
            assert_eq!(store.get(&key("nope")).await.unwrap_err().kind(), ErrorKind::NotFound);
            let d = store.digest(&key("hello.txt")).await.unwrap();
            assert_eq!(d.to_string(), "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020");
        });
    }
}

#[test]
fn a_damaged_header_is_a_mount_error_naming_its_offset() {
    require!(missing_gnu_tar());
    let dir = TempDir::new("damaged");
    populate(&dir.0);
    let mut image = archive(&dir.0, "gnu");
    // The second header: after the "./" directory entry of 512 bytes.
    image[512 + 10] ^= 0x20;
    let err = block_on(TarKv::mount(MemBlock::read_only(512, image.clone()).unwrap())).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("byte 512"), "{err}");
    // A truncated archive: deep.bin's 70,000 bytes running past the end.
    let header = image.windows(8).position(|w| w == b"deep.bin").unwrap() / 512 * 512;
    let cut = header + 1024;
    image[512 + 10] ^= 0x20;
    let err = block_on(TarKv::mount(MemBlock::read_only(512, image[..cut].to_vec()).unwrap())).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}
