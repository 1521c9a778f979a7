//! Runs the built `www` binary on a free loopback port and talks HTTP
//! to it with a small client written here and with curl.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use mirage_test_env::{missing_program, require};

/// Every socket operation of these tests gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

mod support;

use support::Server;

#[derive(Debug)]
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads one response; `head_only` for the answer to HEAD.
fn read_response(reader: &mut impl BufRead, head_only: bool) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read status line");
    let status = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("bad status line {line:?}"));
    let status = status.parse().unwrap();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header {line:?}"));
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let len = if head_only { 0 } else { headers["content-length"].parse().unwrap() };
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("read body");
    Response { status, headers, body }
}

/// Sends `raw` on a new connection and reads one response.
fn exchange(server: &Server, raw: &[u8]) -> Response {
    let mut stream = server.connect(IO_TIMEOUT);
    stream.write_all(raw).unwrap();
    read_response(&mut BufReader::new(stream), raw.starts_with(b"HEAD"))
}

fn get(server: &Server, target: &str) -> Response {
    exchange(server, format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
}

fn htdocs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("htdocs")
}

/// Every file of htdocs as (URL path, contents).
fn site_files() -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = format!("{prefix}/{name}");
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &path, out);
            } else {
                out.push((path, std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&htdocs(), "", &mut files);
    assert!(files.len() >= 5, "htdocs has only {} files", files.len());
    files
}

#[test]
fn every_file_is_served_byte_exact_on_one_connection() {
    let server = Server::start(&[], &[]);
    let stream = server.connect(IO_TIMEOUT);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for (path, contents) in site_files() {
        writer.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
        let r = read_response(&mut reader, false);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body == contents, "{path}: served bytes differ from the file");
        let expected_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("txt") => "text/plain; charset=utf-8",
            _ => continue,
        };
        assert_eq!(r.header("content-type"), Some(expected_type), "{path}");
    }
    // Directories serve their index.
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD /docs/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).body, std::fs::read(htdocs().join("index.html")).unwrap());
    let head = read_response(&mut reader, true);
    let docs_index = std::fs::read(htdocs().join("docs/index.html")).unwrap();
    assert_eq!(head.header("content-length"), Some(docs_index.len().to_string().as_str()));
}

#[test]
fn curl_fetches_every_file_byte_exact() {
    require!(missing_program("curl", "curl"));
    let server = Server::start(&[], &[]);
    for (path, contents) in site_files() {
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "20", &server.url(&path)])
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == contents, "{path}: curl got different bytes");
    }
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "20", "--write-out", "%{http_code}", "--output", "/dev/null"])
        .arg(server.url("/no/such/file.html"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}

#[test]
fn a_hundred_requests_on_one_keep_alive_connection() {
    let server = Server::start(&[], &[]);
    let stream = server.connect(IO_TIMEOUT);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let expected = std::fs::read(htdocs().join("hello.txt")).unwrap();
    for i in 0..100 {
        writer.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let r = read_response(&mut reader, false);
        assert_eq!((r.status, r.header("connection")), (200, None), "request {i}");
        assert_eq!(r.body, expected, "request {i}");
    }
}

#[test]
fn missing_files_are_404_and_malformed_requests_400() {
    let server = Server::start(&[], &[]);
    assert_eq!(get(&server, "/missing.html").status, 404);
    assert_eq!(get(&server, "/docs/missing/").status, 404);
    let r = exchange(&server, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "HTTP/1.1 without Host");
    let r = exchange(&server, b"this is not HTTP\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
    let r = exchange(&server, b"PUT /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[test]
fn traversal_attempts_never_leave_the_store() {
    let server = Server::start(&[], &[]);
    for target in [
        "/../Cargo.toml",
        "/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/%2e%2e/Cargo.toml",
        "/docs/%2f..%2f..%2fCargo.toml",
        "/a/%2f..%2fCargo.toml",
        "/..%2f..%2fCargo.toml",
        "/docs/../../build.rs",
        "/./index.html",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
    ] {
        let r = get(&server, target);
        assert!(r.status == 400 || r.status == 404, "{target}: status {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("[package]") && !body.contains("root:"), "{target} leaked a file: {body}");
    }
}

/// Sends a request line of `len` bytes and checks that it is refused with
/// 431 and the connection closed.
fn refuse_request_line(server: &Server, len: usize) {
    let mut request = b"GET /".to_vec();
    request.resize(len, b'a');
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let stream = server.connect(IO_TIMEOUT);
    let mut writer = stream.try_clone().unwrap();
    // The server answers after 8 KiB and stops reading: write from another
    // thread so that the answer is read while the rest is refused.
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let r = read_response(&mut BufReader::new(stream), false);
    assert_eq!((r.status, r.header("connection")), (431, Some("close")));
    sender.join().unwrap();
}

#[test]
fn a_huge_request_line_is_refused_with_bounded_memory() {
    let mut server = Server::start(&[], &[]);
    // A first refusal (16 KiB) runs the refusing and lingering code once,
    // so that the pages of program code it loads are not counted below:
    // the figure is then what the size of the request costs.
    refuse_request_line(&server, 16 * 1024);
    let before = server.peak_rss_kib();
    refuse_request_line(&server, 1024 * 1024);
    // Still healthy, and the megabyte was never held.
    assert_eq!(get(&server, "/hello.txt").status, 200);
    server.assert_running();
    let growth = server.peak_rss_kib().saturating_sub(before);
    assert!(growth < 512, "peak memory grew by {growth} KiB while refusing a 1 MiB request line");
}

#[test]
fn two_hundred_concurrent_connections_are_all_served() {
    let server = Server::start(&[], &[]);
    let expected = std::fs::read(htdocs().join("style.css")).unwrap();
    // All connected before any is answered, so they are open at once.
    let streams: Vec<TcpStream> = (0..200).map(|_| server.connect(IO_TIMEOUT)).collect();
    for mut stream in &streams {
        stream.write_all(b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    }
    for (i, stream) in streams.into_iter().enumerate() {
        let r = read_response(&mut BufReader::new(stream), false);
        assert_eq!(r.status, 200, "connection {i}");
        assert!(r.body == expected, "connection {i}");
    }
}

#[test]
fn a_bad_flag_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_www")).args(["-l", "error", "--", "--port", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("--port 0") || stderr.contains("--port 0"), "stdout:\n{stdout}\nstderr:\n{stderr}");
}
