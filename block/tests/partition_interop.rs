//! Partition tables against Linux's tools: images made by `sgdisk` (Debian
//! package gdisk) and `sfdisk` (package fdisk) read correctly by us, and
//! images we write accepted by them. Each test skips when its tool is
//! absent, or fails under CI (`mirage_test_env`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use futures::executor::block_on;
use mirage_block::{Gpt, GptPartition, Guid, Mbr, MbrPartition, MemBlock};
use mirage_test_env::{missing_program, missing_programs, require};
use mirage_types::block::BlockDevice;

const SECTORS: u64 = 16384; // 8 MiB of 512-byte sectors

/// A zero-filled 8 MiB image file, removed when dropped.
struct ImageFile(PathBuf);

impl ImageFile {
    fn new(name: &str) -> ImageFile {
        let path = std::env::temp_dir().join(format!("mirage-block-{}-{name}.img", std::process::id()));
        std::fs::write(&path, vec![0u8; SECTORS as usize * 512]).expect("create the image file");
        ImageFile(path)
    }

    fn device(&self) -> MemBlock {
        MemBlock::from_vec(512, std::fs::read(&self.0).expect("read the image")).expect("an 8 MiB image")
    }

    fn store(&self, dev: MemBlock) {
        std::fs::write(&self.0, dev.into_vec()).expect("write the image");
    }

    /// Runs `tool args… image` with `stdin`, returns stdout; panics with
    /// the tool's stderr if it fails.
    fn run(&self, tool: &str, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(args)
            .arg(&self.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tool");
        child.stdin.take().expect("piped").write_all(stdin.as_bytes()).expect("feed the tool");
        let out = child.wait_with_output().expect("wait for the tool");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{tool} {args:?} failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        stdout
    }
}

impl Drop for ImageFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The value of `key=` in an `sfdisk --dump` partition line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    Some(rest.split(',').next()?.trim().trim_matches('"'))
}

#[test]
fn sgdisk_images_are_read_correctly() {
    require!(missing_program("sgdisk", "gdisk"));
    let img = ImageFile::new("sgdisk-read");
    img.run("sgdisk", &["-o", "-n", "1:2048:+1M", "-t", "1:8300", "-c", "1:root", "-n", "2:0:0", "-t", "2:ef00"], "");
    let dump = img.run("sfdisk", &["--dump"], "");
    let read = block_on(Gpt::read(&img.device())).expect("our reader accepts sgdisk's table");
    assert_eq!(read.primary_error, None);
    assert_eq!(read.backup_error, None);
    let gpt = read.gpt;
    assert_eq!((gpt.first_usable_lba, gpt.last_usable_lba), (34, SECTORS - 34));
    let root = gpt.partition(0).expect("partition 1");
    assert_eq!((root.first_lba, root.last_lba, root.type_guid), (2048, 4095, Guid::LINUX_FILESYSTEM));
    assert_eq!(root.name, "root");
    let esp = gpt.partition(1).expect("partition 2");
    assert_eq!(esp.type_guid, Guid::EFI_SYSTEM);
    // The GUIDs sgdisk chose at random, as sfdisk prints them.
    let lines: Vec<&str> = dump.lines().filter(|l| l.contains("start=")).collect();
    assert_eq!(lines.len(), 2, "{dump}");
    for (line, p) in lines.iter().zip([root, esp]) {
        assert_eq!(field(line, "uuid"), Some(p.unique_guid.to_string().as_str()), "{line}");
        assert_eq!(field(line, "start").map(str::parse::<u64>), Some(Ok(p.first_lba)), "{line}");
        assert_eq!(field(line, "size").map(str::parse::<u64>), Some(Ok(p.sector_count())), "{line}");
    }
    let disk = dump.lines().find_map(|l| l.strip_prefix("label-id: ")).expect("label-id");
    assert_eq!(gpt.disk_guid.to_string(), disk);

    // Damage the primary header: we fall back on the backup, as sgdisk does.
    let dev = img.device();
    block_on(dev.write(1, &[0; 512])).unwrap();
    let read = block_on(Gpt::read(&dev)).expect("the backup is valid");
    assert!(read.primary_error.is_some());
    assert_eq!(read.gpt, gpt);
}

#[test]
fn our_gpt_images_pass_sgdisk_verify() {
    require!(missing_programs(&[("sgdisk", "gdisk"), ("sfdisk", "fdisk")]));
    let img = ImageFile::new("gpt-write");
    let dev = img.device();
    let disk = Guid::parse("3BB309FA-4127-482D-B092-B1E440EBBE45").unwrap();
    let mut gpt = Gpt::new(disk, dev.info()).unwrap();
    let unique = Guid::parse("86669DEE-9D7F-4EE7-9012-73F6BAAC5FDC").unwrap();
    gpt.partitions.push(GptPartition {
        index: 0,
        type_guid: Guid::LINUX_FILESYSTEM,
        unique_guid: unique,
        first_lba: 2048,
        last_lba: 6143,
        attributes: 0,
        name: "données".into(),
    });
    block_on(gpt.write(&dev)).unwrap();
    img.store(dev);
    let verify = img.run("sgdisk", &["-v"], "");
    assert!(verify.contains("No problems found"), "{verify}");
    let dump = img.run("sfdisk", &["--dump"], "");
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(dump.contains("label-id: 3BB309FA-4127-482D-B092-B1E440EBBE45"), "{dump}");
    let line = dump.lines().find(|l| l.contains("start=")).expect("a partition line");
    assert_eq!(field(line, "start"), Some("2048"), "{line}");
    assert_eq!(field(line, "size"), Some("4096"), "{line}");
    assert_eq!(field(line, "type"), Some("0FC63DAF-8483-4772-8E79-3D69D8477DE4"), "{line}");
    assert_eq!(field(line, "uuid"), Some("86669DEE-9D7F-4EE7-9012-73F6BAAC5FDC"), "{line}");
    // sfdisk escapes the UTF-8 bytes of non-ASCII names.
    assert_eq!(field(line, "name"), Some(r"donn\xc3\xa9es"), "{line}");
}

#[test]
fn sfdisk_mbr_images_are_read_and_ours_match_them() {
    require!(missing_program("sfdisk", "fdisk"));
    let img = ImageFile::new("mbr");
    img.run("sfdisk", &["-q"], "label: dos\nlabel-id: 0x12345678\n2048,4096,83\n,,c,*\n");
    let theirs = img.device();
    let mbr = block_on(Mbr::read(&theirs)).expect("our reader accepts sfdisk's table");
    let expect = Mbr {
        disk_signature: 0x1234_5678,
        partitions: [
            Some(MbrPartition { bootable: false, partition_type: 0x83, first_lba: 2048, sector_count: 4096 }),
            Some(MbrPartition { bootable: true, partition_type: 0x0c, first_lba: 6144, sector_count: 10240 }),
            None,
            None,
        ],
    };
    assert_eq!(mbr, expect);

    // Our writer produces the same sector 0, CHS fields included.
    let ours = MemBlock::new(512, SECTORS).unwrap();
    block_on(expect.write(&ours)).unwrap();
    let (a, b) = (theirs.into_vec(), ours.into_vec());
    assert_eq!(a[440..512], b[440..512], "table bytes differ from sfdisk's");

    let img = ImageFile::new("mbr-ours");
    img.store(MemBlock::from_vec(512, b).unwrap());
    let dump = img.run("sfdisk", &["--dump"], "");
    assert!(dump.contains("label: dos") && dump.contains("label-id: 0x12345678"), "{dump}");
    assert!(dump.contains("start=        2048, size=        4096, type=83"), "{dump}");
    assert!(dump.contains("start=        6144, size=       10240, type=c, bootable"), "{dump}");
    let verify = img.run("sfdisk", &["--verify"], "");
    assert!(verify.contains("No errors detected"), "{verify}");
}
