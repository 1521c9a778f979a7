//! What the integration tests share: the tool, an application made with
//! `cargo mirage new` outside the workspace, bounded commands, processes
//! stopped with everything they started.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a build may take (a first build compiles every dependency).
pub const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// This checkout.
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_path_buf()
}

/// Runs `command` under `timeout` (coreutils) for at most `limit`,
/// collecting its output.
pub fn bounded(command: &mut Command, limit: Duration) -> Output {
    let mut wrapped = Command::new("timeout");
    wrapped
        .args(["--kill-after=10", &format!("{}", limit.as_secs())])
        .arg(command.get_program())
        .args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// The output of a command as text, for messages.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Like [`bounded`], failing the test with the output unless it succeeds.
pub fn succeed(command: &mut Command, limit: Duration) -> String {
    let shown = format!("{command:?}");
    let output = bounded(command, limit);
    let text = text(&output);
    assert!(output.status.success(), "{shown} failed ({}):\n{text}", output.status);
    text
}

/// An application made by `cargo mirage new` in a fresh directory under
/// the system's temporary directory (outside the workspace), built in a
/// target directory under `CARGO_TARGET_TMPDIR` that stays between runs.
pub struct App {
    /// The crate's directory.
    pub dir: PathBuf,
    /// Its name.
    pub name: String,
    /// The target directory.
    pub target_dir: PathBuf,
}

impl App {
    /// Runs `cargo mirage new NAME` and points `mirage-rs` at this
    /// checkout with `[patch.crates-io]` (it resolves although no
    /// `mirage-rs` is published). The workspace's `Cargo.lock` is copied
    /// in so the dependencies resolve as they do here.
    pub fn new(name: &str) -> App {
        let root = std::env::temp_dir().join(format!("cargo-mirage-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        let dir = root.join(name);
        let created = succeed(cargo_mirage(&root).args(["new", name, "--path"]).arg(&dir), Duration::from_secs(60));
        assert!(created.contains("created"), "{created}");
        let manifest = dir.join("Cargo.toml");
        let mut text =
            fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
        text.push_str(&format!(
            "\n[patch.crates-io]\nmirage-rs = {{ path = \"{}\" }}\n",
            workspace().join("mirage").display()
        ));
        fs::write(&manifest, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", manifest.display()));
        let _ = fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock"));
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-mirage-apps");
        App { dir, name: name.to_string(), target_dir }
    }

    /// `cargo mirage ARGS` in the application's directory.
    pub fn cargo_mirage(&self, args: &[&str]) -> Command {
        let mut command = cargo_mirage(&self.dir);
        command.args(args).env("CARGO_TARGET_DIR", &self.target_dir);
        command
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(root) = self.dir.parent() {
            let _ = fs::remove_dir_all(root);
        }
    }
}

/// The built tool, as cargo runs it (`cargo-mirage mirage ...`), in `dir`.
pub fn cargo_mirage(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-mirage"));
    command.arg("mirage").current_dir(dir);
    command
}

/// A TCP port of the loopback that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// A process started in a process group of its own, with its output in a
/// file; dropping it stops the group (SIGTERM, then SIGKILL).
pub struct Group {
    child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Group {
    /// Starts `command` with its output in `log`.
    pub fn spawn(command: &mut Command, log: &Path) -> Group {
        use std::os::unix::process::CommandExt;
        let file = fs::File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = file.try_clone().expect("clone the log's handle");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Group { child, log: log.to_path_buf() }
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status if it ended.
    pub fn ended(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal(&self, signal: &str) {
        let _ =
            Command::new("kill").args([signal, "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(10) {
            if self.ended().is_some() {
                // Whatever else of the group is left goes too.
                self.signal("-KILL");
                return;
            }
            sleep(Duration::from_millis(100));
        }
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches `url` with curl (in the network namespace `netns`, if given;
/// every attempt bounded) until it answers or `limit` passes; `group`, if
/// given, must not end meanwhile. Returns the body.
pub fn fetch_until(netns: Option<&str>, url: &str, limit: Duration, mut group: Option<&mut Group>) -> String {
    let started = Instant::now();
    loop {
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, "curl"]);
                command
            }
            None => Command::new("curl"),
        };
        command.args(["-sS", "--max-time", "5", url]);
        let output = bounded(&mut command, Duration::from_secs(15));
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        if let Some(group) = group.as_deref_mut() {
            if let Some(status) = group.ended() {
                panic!("the server ended ({status}) before answering {url}; its output:\n{}", group.output());
            }
        }
        if started.elapsed() > limit {
            let server = group.map(|g| g.output()).unwrap_or_default();
            panic!("no answer from {url} within {limit:?}: {}\nthe server's output:\n{server}", text(&output));
        }
        sleep(Duration::from_millis(500));
    }
}
