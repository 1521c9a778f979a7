//! Runs the built `echo` binary on a free loopback port and checks
//! that concurrent connections get their bytes back exactly.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mirage_testkit::pattern;

/// A running `echo`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_echo"))
            .args(["-l", "warn", "--", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start echo");
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(server.child.try_wait().unwrap().is_none(), "echo exited before listening");
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(Instant::now() < deadline, "echo did not listen on port {port} within 20 s");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn concurrent_connections_get_megabytes_back_exactly() {
    let server = Server::start();
    let len = 3 * 1024 * 1024;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let port = server.port;
            thread::spawn(move || {
                // Odd seeds: distinct bytes per connection, so a mix-up
                // between connections shows.
                let data = pattern(2 * i + 1, len);
                let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut writer = stream.try_clone().unwrap();
                // Send and receive at once: the server holds at most one
                // buffer, so a client that only wrote would stall.
                let sent = data.clone();
                let sender = thread::spawn(move || {
                    for piece in sent.chunks(50_000) {
                        writer.write_all(piece).unwrap();
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut echoed = Vec::with_capacity(len);
                (&stream).read_to_end(&mut echoed).unwrap();
                sender.join().unwrap();
                assert_eq!(echoed.len(), data.len(), "connection {i}");
                assert!(echoed == data, "connection {i}: bytes differ");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

#[test]
fn a_bad_flag_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo")).args(["-l", "error", "--", "--port", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("--port x"), "{text}");
}
