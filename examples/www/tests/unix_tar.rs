//! `www --block htdocs=SITE.tar` serves a tar archive made by GNU tar
//! through `TarKv`, instead of the site compiled into the binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mirage_test_env::{missing_program, require};

/// A running `www`, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GETs `path` with `Connection: close` and returns the status and body.
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to www");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("end of the response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, response[split + 4..].to_vec())
}

#[test]
fn serves_a_gnu_tar_archive_from_a_block_device() {
    require!(missing_program("tar", "tar"));
    let dir = std::env::temp_dir().join(format!("www-tar-store-{}", std::process::id()));
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("notes")).unwrap();
    // Content the compiled-in site does not have, so a 200 proves the archive is served.
    let page = b"<!DOCTYPE html><title>from the archive</title>\n".to_vec();
    let note: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.join("index.html"), &page).unwrap();
    std::fs::write(site.join("notes/data.bin"), &note).unwrap();
    let archive = dir.join("site.tar");
    let status = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&site).arg(".").status().unwrap();
    assert!(status.success(), "tar failed: {status}");

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_www"))
            .arg("--block")
            .arg(format!("htdocs={}:ro", archive.display()))
            .args(["-l", "warn", "--", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start www"),
    );
    wait_until_listening(&mut server, port);

    assert_eq!(get(port, "/"), (200, page));
    assert_eq!(get(port, "/notes/data.bin"), (200, note));
    // A file of the compiled-in site is not there: the archive replaced it.
    assert_eq!(get(port, "/style.css").0, 404);
    drop(server);
    remove_dir(&dir);
}

fn wait_until_listening(server: &mut Server, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("www exited with {status} before listening");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("www did not listen on port {port} within 20 s");
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
