//! LogKv survives its process being killed at any instant: a supervisor
//! runs `mirage-kv stress` on an image file, kills it with SIGKILL at 200
//! random instants, and after each kill checks that the store holds every
//! acknowledged operation (the one in flight may be there or not), that
//! fsck is clean, and restarts the workload on that state.
//!
//! A killed process loses nothing it handed to the kernel, so this tests
//! what LogKv leaves on the file when stopped between any two of its
//! system calls; power loss (lost page cache) is tested with CrashBlock in
//! block/tests/log_kv_crash.rs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::executor::block_on;
use mirage_block::{LogKv, MemBlock};
use mirage_types::kv::{Key, KvRead};
use mirage_types::time::{PosixTime, WallClock};

/// Kills, and so runs of the workload.
const KILLS: u64 = 200;
/// The longest a run lives before its kill. Short enough for 200 runs to
/// stay well under a minute in a debug build, long enough for a run to get
/// through its mount and dozens of operations.
const MAX_LIFE_MS: u64 = 60;
/// The seed of the kill instants; printed so a failure can be replayed.
const SEED: u64 = 0x5eed_c1a5;

/// Values by key, as SHA-256 hex digests.
type Model = BTreeMap<String, String>;

struct FixedClock;

impl WallClock for FixedClock {
    fn wall_time(&self) -> PosixTime {
        PosixTime::EPOCH
    }
}

/// SplitMix64, for the kill instants.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies one reported operation (`set KEY DIGEST`, `mv FROM TO`, `rm KEY`).
fn apply(model: &mut Model, op: &str) {
    let words: Vec<&str> = op.split(' ').collect();
    match words[..] {
        ["set", key, digest] => drop(model.insert(key.to_string(), digest.to_string())),
        ["mv", from, to] if from != to => {
            let value = model.remove(from).unwrap_or_else(|| panic!("the workload moved the missing {from}"));
            model.insert(to.to_string(), value);
        }
        ["mv", _, _] => {}
        ["rm", key] => drop(model.remove(key).unwrap_or_else(|| panic!("the workload removed the missing {key}"))),
        _ => panic!("the workload reported an unknown operation {op:?}"),
    }
}

/// Mounts the image, checks it and returns its contents.
fn contents(image: &Path) -> Model {
    let bytes = std::fs::read(image).expect("read the image");
    block_on(async {
        let store = LogKv::mount(MemBlock::from_vec(512, bytes).expect("a whole number of sectors"), FixedClock)
            .await
            .unwrap_or_else(|e| panic!("mount after a kill: {e}"));
        let report = store.check().await.expect("check");
        assert!(report.is_clean(), "fsck after a kill:\n{report}");
        let mut found = Model::new();
        for d in 0..4 {
            let dir = Key::parse(&format!("d{d}")).expect("key");
            let Ok(names) = store.list(&dir).await else { continue };
            for (name, _) in names {
                let key = dir.child(&name).expect("key");
                let digest = store.digest(&key).await.expect("digest");
                // The digest is the one the store recorded; get() checks the
                // bytes on the file against it.
                store.get(&key).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
                found.insert(key.as_str().to_string(), hex(&digest.0));
            }
        }
        found
    })
}

#[test]
fn every_acknowledged_operation_survives_200_sigkills() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let image = dir.path().join("stress.img");
    let bin = env!("CARGO_BIN_EXE_mirage-kv");
    // 256 KiB: two halves of 127.5 KiB, so the workload (values up to 3000
    // bytes over 32 keys) compacts every few dozen operations.
    let status = Command::new(bin).args(["format", "--size", "256K"]).arg(&image).status().expect("run format");
    assert!(status.success());
    println!("kill instants seeded with {SEED:#x}");
    let mut rng = SplitMix(SEED);
    let mut model = Model::new();
    let (mut acknowledged, mut in_flight_landed) = (0u64, 0u64);
    for run in 0..KILLS {
        let mut child = Command::new(bin)
            .args(["stress", "--seed", &run.to_string()])
            .arg(&image)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the workload");
        std::thread::sleep(Duration::from_millis(rng.next() % (MAX_LIFE_MS + 1)));
        // Child::kill sends SIGKILL on unix.
        child.kill().expect("SIGKILL the workload");
        let mut stdout = String::new();
        child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read the report");
        let mut stderr = String::new();
        child.stderr.take().expect("piped").read_to_string(&mut stderr).expect("read stderr");
        let status = child.wait().expect("reap the workload");
        assert!(status.code().is_none(), "run {run}: the workload exited by itself ({status}): {stderr}");

        let mut in_flight = None;
        for line in stdout.lines() {
            if let Some(op) = line.strip_prefix("begin ") {
                assert!(in_flight.is_none(), "run {run}: two operations in flight");
                in_flight = Some(op.to_string());
            } else if line == "ok" {
                let op = in_flight.take().unwrap_or_else(|| panic!("run {run}: ok without an operation"));
                apply(&mut model, &op);
                acknowledged += 1;
            } else {
                panic!("run {run}: unexpected output {line:?}");
            }
        }
        let found = contents(&image);
        if found != model {
            let op = in_flight.as_deref().unwrap_or_else(|| {
                panic!("run {run}: the store lost acknowledged writes:\nfound {found:?}\nexpected {model:?}")
            });
            let mut with = model.clone();
            apply(&mut with, op);
            assert_eq!(found, with, "run {run}: the store is neither before nor after {op}");
            model = with;
            in_flight_landed += 1;
        }
    }
    println!("{KILLS} kills, {acknowledged} acknowledged operations, {in_flight_landed} in-flight ones landed");
    // A run that never got past mount proves nothing: most must have worked.
    assert!(acknowledged > KILLS, "only {acknowledged} operations were acknowledged in {KILLS} runs");
}
