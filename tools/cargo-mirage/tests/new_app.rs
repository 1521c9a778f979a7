//! From nothing to a served page: `cargo mirage new greeter` outside the
//! workspace, `cargo mirage build` for unix and virtio, then `cargo mirage
//! run` of each and a `curl` of its greeting (the virtio guest under QEMU
//! with a port forward). Prints how long it took from `new` to the virtio
//! answer.
//!
//! Needs `curl` and `qemu-system-x86_64`; without them it fails under CI
//! (env `CI`) and skips elsewhere (`mirage_test_env`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{fetch_until, free_port, succeed, App, Group, BUILD_LIMIT};
use mirage_test_env::{missing_programs, require};

/// How long a built application may take to answer (the unikernel boots
/// under TCG and asks DHCP first).
const ANSWER_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn a_new_app_builds_and_answers_on_unix_and_virtio() {
    require!(missing_programs(&[("curl", "curl"), ("qemu-system-x86_64", "qemu-system-x86")]));
    let started = Instant::now();
    let app = App::new("greeter");
    let greeting = "hello from greeter\n";

    let built = succeed(&mut app.cargo_mirage(&["build", "-t", "unix"]), BUILD_LIMIT);
    let unix_line = built.lines().find(|l| l.contains("/debug/greeter (")).unwrap_or_else(|| panic!("{built}"));
    assert!(unix_line.contains(" bytes, "), "{unix_line}");
    let built = succeed(&mut app.cargo_mirage(&["build", "-t", "virtio"]), BUILD_LIMIT);
    let image = app.target_dir.join("x86_64-unknown-linux-gnu/mirage-virtio/greeter");
    assert!(built.contains("mirage-virtio/greeter (") && image.is_file(), "{built}");
    assert!(image.with_extension("xml").is_file(), "no libvirt domain beside the image:\n{built}");

    // The unix program on the host's sockets; the second `--` starts the
    // application's own arguments.
    let port = free_port();
    let mut unix = Group::spawn(
        &mut app.cargo_mirage(&["run", "-t", "unix", "--", "--", "--port", &port.to_string()]),
        &app.dir.join("unix.log"),
    );
    let body = fetch_until(None, &format!("http://127.0.0.1:{port}/"), ANSWER_LIMIT, Some(&mut unix));
    assert_eq!(body, greeting);
    drop(unix);

    // The unikernel under QEMU microvm, on user networking.
    let host_port = free_port();
    let mut virtio = Group::spawn(
        &mut app.cargo_mirage(&["run", "-t", "virtio", "--forward", &format!("{host_port}:8080")]),
        &app.dir.join("virtio.log"),
    );
    let body = fetch_until(None, &format!("http://127.0.0.1:{host_port}/"), ANSWER_LIMIT, Some(&mut virtio));
    println!("from `cargo mirage new` to the virtio guest's answer: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(body, greeting, "{}", virtio.output());
    assert!(virtio.output().contains("serving http://0.0.0.0:8080/"), "{}", virtio.output());
}

#[test]
fn outside_a_crate_and_without_mirage_rs_the_tool_says_what_to_do() {
    let empty = std::env::temp_dir().join(format!("cargo-mirage-test-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create a directory");
    let out = common::bounded(common::cargo_mirage(&empty).args(["build", "-t", "unix"]), Duration::from_secs(60));
    let text = common::text(&out);
    assert!(!out.status.success() && text.contains("cargo mirage new"), "{text}");

    // A package without mirage-rs.
    let crate_dir = empty.join("plain");
    succeed(common::cargo_mirage(&empty).args(["new", "plain", "--path"]).arg(&crate_dir), Duration::from_secs(60));
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read the manifest");
    std::fs::write(&manifest, text.replace("mirage-rs = \"0.1\"\n", "")).expect("write the manifest");
    let out =
        common::bounded(common::cargo_mirage(&crate_dir).args(["build", "-t", "virtio"]), Duration::from_secs(120));
    let text = common::text(&out);
    let _ = std::fs::remove_dir_all(&empty);
    assert!(!out.status.success() && text.contains("does not depend on mirage-rs"), "{text}");
    assert!(text.contains("mirage-rs = \"0.1\""), "{text}");

    // A disk that does not exist, before anything is built.
    let out = common::bounded(
        common::cargo_mirage(Path::new("/")).args(["run", "-t", "virtio", "--disk", "d=/nonexistent.img"]),
        Duration::from_secs(60),
    );
    let text = common::text(&out);
    assert!(!out.status.success() && text.contains("truncate -s"), "{text}");
}
