//! Runs the built `hello` binary as a Linux process and checks what it prints.

use std::process::Command;

fn hello() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hello"))
}

#[test]
fn greets_four_times_and_exits_zero() {
    let out = hello().output().expect("run hello");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit status {:?}, stdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let greetings: Vec<&str> = stdout.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "stdout:\n{stdout}");
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
        assert!(line.contains("INFO"), "not logged at info level: {line}");
    }
}

#[test]
fn log_filter_off_silences_it() {
    let out = hello().args(["-l", "off"]).output().expect("run hello");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let out = hello().arg("--frobnicate").output().expect("run hello");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--frobnicate"), "{stderr}");
    assert!(stderr.contains("usage: APP"), "{stderr}");
    assert!(out.stdout.is_empty());
}
