//! What the loopback tests share (`unix.rs`, `unix_strict.rs`,
//! `unix_linger.rs`, `unix_slots.rs`): the built `www`
//! on a free loopback port, killed when dropped, and raw TCP exchanges
//! whose every wait is bounded.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running `www`, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// `www -l warn [platform...] -- --port P [app...]` on a free port,
    /// once it accepts connections (at most 20 s).
    pub fn start(platform: &[&str], app: &[&str]) -> Server {
        // The kernel picks a free port; the server binds it right after
        // (SO_REUSEADDR), a race only another process could lose us.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port_arg = port.to_string();
        // WWW_TEST_LOG=debug shows the server's log (its console is stdout).
        let log = std::env::var("WWW_TEST_LOG").ok();
        let child = Command::new(env!("CARGO_BIN_EXE_www"))
            .args(["-l", log.as_deref().unwrap_or("warn")])
            .args(platform)
            .args(["--", "--port", &port_arg])
            .args(app)
            .stdin(Stdio::null())
            .stdout(if log.is_some() { Stdio::inherit() } else { Stdio::null() })
            .stderr(if log.is_some() { Stdio::inherit() } else { Stdio::piped() })
            .spawn()
            .expect("start www");
        let mut server = Server { child, port };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("www exited with {status} before listening:\n{stderr}");
            }
            // A probe that is accepted and closed at once holds no slot for long.
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("www did not listen on port {} within 20 s", self.port);
    }

    /// A new connection whose reads and writes give up after `timeout`.
    pub fn connect(&self, timeout: Duration) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to www");
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        stream
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Peak resident memory of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Fails the test if the server died.
    pub fn assert_running(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "www exited");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What came back on a connection: every byte until end of stream, or
/// until the wait ran out (`closed` false), or until an error.
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    /// The server closed its side (end of stream).
    pub closed: bool,
    /// The read failed (a reset, most likely), after `bytes`.
    pub error: Option<std::io::Error>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status code of the first response.
    pub fn status(&self) -> Option<u16> {
        let line = self.bytes.split(|&b| b == b'\n').next()?;
        std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?.parse().ok()
    }

    /// The value of a header field of the first response (name in any case).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// How many responses (status lines) came back.
    pub fn responses(&self) -> usize {
        let text = self.text();
        text.match_indices("HTTP/1.1 ").filter(|(at, _)| *at == 0 || text[..*at].ends_with('\n')).count()
    }

    /// The body of the first response, by its Content-Length.
    pub fn body(&self) -> Option<&[u8]> {
        let split = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let len: usize = self.header("content-length")?.parse().ok()?;
        self.bytes.get(split..split + len)
    }
}

/// Reads from `stream` until end of stream, an error, or `limit` passes.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Received {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Received { bytes, closed: false, error: None };
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Received { bytes, closed: true, error: None },
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Received { bytes, closed: false, error: None }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Received { bytes, closed: false, error: Some(e) },
        }
    }
}

/// Sends `raw` on a new connection, half-closes it (the server sees the
/// end of the request bytes) unless `keep_open`, and reads until the server
/// closes or `limit` passes.
pub fn exchange(server: &Server, raw: &[u8], keep_open: bool, limit: Duration) -> Received {
    let mut stream = server.connect(limit);
    stream.write_all(raw).expect("send the request");
    if !keep_open {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_until_closed(&mut stream, limit)
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("www-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dir/site.tar` holding `files` (name, contents), made by GNU tar; `None`
/// if tar is not installed.
pub fn tar_site(dir: &Path, files: &[(&str, &[u8])]) -> Option<PathBuf> {
    if Command::new("tar").arg("--version").output().is_err() {
        return None;
    }
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    for (name, contents) in files {
        std::fs::write(site.join(name), contents).unwrap();
    }
    let archive = dir.join("site.tar");
    let status = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&site).arg(".").status().unwrap();
    assert!(status.success(), "tar failed: {status}");
    Some(archive)
}

/// The file of the compiled-in site at `path` (under htdocs/).
pub fn htdocs(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("htdocs").join(path)).unwrap()
}
