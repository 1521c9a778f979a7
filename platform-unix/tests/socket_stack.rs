//! `SocketStack` against the host kernel on loopback, and for ping in a
//! network namespace this test creates (and deletes, also on failure), where
//! it may allow ping sockets and set up routes without touching the host.
//!
//! Needs root and iproute2's `ip` for the namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use mirage_platform_unix::socket_stack::SocketStack;
use mirage_testkit::pattern;
use mirage_types::flow::{self, Flow, Shutdown};
use mirage_types::icmp::{self, Icmp};
use mirage_types::stack::Stack;
use mirage_types::tcp::{self, Keepalive, Tcp, TcpFlow, TcpListener};
use mirage_types::udp::{self, Udp, UdpSocket};
use tokio::task::LocalSet;
use tokio::time::timeout;

/// Every wait in these tests ends within this.
const LIMIT: Duration = Duration::from_secs(20);

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Runs `test` on a current-thread runtime with a `LocalSet`, as the
/// platform does, bounded by [`LIMIT`].
fn run<F: std::future::Future<Output = ()>>(test: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    LocalSet::new().block_on(&rt, async {
        timeout(LIMIT, test).await.expect("test took longer than its time limit");
    });
}

async fn echo_until_eof<F: Flow>(mut flow: F) -> u64 {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = flow.read(&mut buf).await.expect("server read");
        if n == 0 {
            flow.close().await.expect("server close");
            return total;
        }
        flow.write_all(&buf[..n]).await.expect("server write");
        total += n as u64;
    }
}

#[test]
fn tcp_echo_of_mebibytes_over_concurrent_connections() {
    const CONNECTIONS: usize = 4;
    const BYTES: usize = 3 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    run(async {
        let stack = SocketStack::new();
        let listener = stack.tcp().listen(localhost(0), 16).await.expect("listen");
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);

        let server = tokio::task::spawn_local(async move {
            let mut echoes = Vec::new();
            for _ in 0..CONNECTIONS {
                let flow = listener.accept().await.expect("accept");
                echoes.push(tokio::task::spawn_local(echo_until_eof(flow)));
            }
            let mut totals = Vec::new();
            for echo in echoes {
                totals.push(echo.await.expect("echo task"));
            }
            totals
        });

        let clients = (0..CONNECTIONS).map(|conn| async move {
            let mut flow = SocketStack::new().tcp().connect(addr).await.expect("connect");
            assert_eq!(flow.remote_addr(), addr);
            flow.set_nodelay(true).expect("nodelay");
            // Odd seeds: different data for every connection.
            let data = pattern(2 * conn as u64 + 1, BYTES);
            let mut back = vec![0u8; CHUNK];
            // Alternate writing a chunk and reading its echo: the flow is
            // one owned value, and this never lets either buffer fill.
            for chunk in data.chunks(CHUNK) {
                flow.write_all(chunk).await.expect("client write");
                let mut got = 0;
                while got < chunk.len() {
                    let n = flow.read(&mut back[got..chunk.len()]).await.expect("client read");
                    assert_ne!(n, 0, "server closed early");
                    got += n;
                }
                assert_eq!(&back[..chunk.len()], chunk, "connection {conn} echoed wrong bytes");
            }
            flow.shutdown(Shutdown::Write).await.expect("client shutdown");
            assert_eq!(flow.read(&mut back).await.expect("read EOF"), 0);
            flow.close().await.expect("client close");
        });
        futures::future::join_all(clients).await;
        let totals = server.await.expect("server task");
        assert_eq!(totals, vec![BYTES as u64; CONNECTIONS]);
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    run(async {
        let stack = SocketStack::new();
        // Bind and release a port so nothing listens on it.
        let port = std::net::TcpListener::bind(localhost(0)).unwrap().local_addr().unwrap().port();
        let e = stack.tcp().connect(localhost(port)).await.expect_err("nothing listens there");
        assert_eq!(tcp::Error::kind(&e), tcp::ErrorKind::ConnectionRefused, "{e}");
        assert!(e.to_string().contains(&localhost(port).to_string()), "{e}");
    });
}

#[test]
fn connect_to_port_zero_and_backlog_zero_are_invalid() {
    run(async {
        let stack = SocketStack::new();
        let e = stack.tcp().connect(localhost(0)).await.expect_err("port 0");
        assert_eq!(tcp::Error::kind(&e), tcp::ErrorKind::InvalidInput, "{e}");
        let e = stack.tcp().listen(localhost(0), 0).await.expect_err("backlog 0");
        assert_eq!(tcp::Error::kind(&e), tcp::ErrorKind::InvalidInput, "{e}");
    });
}

#[test]
fn binding_a_bound_port_is_address_in_use() {
    run(async {
        let stack = SocketStack::new();
        let listener = stack.tcp().listen(localhost(0), 4).await.expect("listen");
        let e = stack.tcp().listen(listener.local_addr(), 4).await.expect_err("second listen");
        assert_eq!(tcp::Error::kind(&e), tcp::ErrorKind::AddressInUse, "{e}");
        assert!(e.to_string().contains(&listener.local_addr().to_string()), "{e}");

        let socket = stack.udp().bind(localhost(0)).await.expect("bind");
        let e = stack.udp().bind(socket.local_addr()).await.expect_err("second bind");
        assert_eq!(udp::Error::kind(&e), udp::ErrorKind::AddressInUse, "{e}");
    });
}

#[test]
fn binding_a_foreign_address_is_address_not_available() {
    run(async {
        // 192.0.2.1 (TEST-NET-1) is never configured on a host.
        let foreign = SocketAddr::from(([192, 0, 2, 1], 0));
        let e = SocketStack::new().tcp().listen(foreign, 4).await.expect_err("foreign address");
        assert_eq!(tcp::Error::kind(&e), tcp::ErrorKind::AddressNotAvailable, "{e}");
        let e = SocketStack::new().udp().bind(foreign).await.expect_err("foreign address");
        assert_eq!(udp::Error::kind(&e), udp::ErrorKind::AddressNotAvailable, "{e}");
    });
}

/// Accepts one connection from a fresh client; returns (client, server).
async fn connected_pair() -> (impl TcpFlow<Error = flow::FlowError>, impl TcpFlow<Error = flow::FlowError>) {
    let stack = SocketStack::new();
    let listener = stack.tcp().listen(localhost(0), 4).await.expect("listen");
    let (client, server) = futures::join!(stack.tcp().connect(listener.local_addr()), listener.accept());
    let (client, server) = (client.expect("connect"), server.expect("accept"));
    assert_eq!(client.local_addr(), server.remote_addr());
    assert_eq!(client.remote_addr(), server.local_addr());
    (client, server)
}

#[test]
fn shutdown_write_delivers_eof_and_keeps_the_other_direction() {
    run(async {
        let (mut client, mut server) = connected_pair().await;
        client.write_all(b"request").await.unwrap();
        client.shutdown(Shutdown::Write).await.unwrap();

        let e = client.write(b"more").await.expect_err("write after shutdown(Write)");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::BrokenPipe, "{e}");

        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"request");
        // End of stream stays end of stream.
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);

        server.write_all(b"response").await.unwrap();
        server.close().await.unwrap();
        let mut got = Vec::new();
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"response", "the read side must still work after shutdown(Write)");
    });
}

#[test]
fn read_after_peer_close_is_end_of_stream() {
    run(async {
        let (mut client, mut server) = connected_pair().await;
        server.close().await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    });
}

#[test]
fn io_after_close_is_not_connected() {
    run(async {
        let (mut client, _server) = connected_pair().await;
        client.close().await.unwrap();
        client.close().await.expect("closing twice is not an error");
        let mut buf = [0u8; 8];
        let e = client.read(&mut buf).await.expect_err("read after close");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::NotConnected, "{e}");
        let e = client.write(b"x").await.expect_err("write after close");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::NotConnected, "{e}");
        let e = client.shutdown(Shutdown::Read).await.expect_err("shutdown after close");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::NotConnected, "{e}");

        let (mut client, _server) = connected_pair().await;
        client.shutdown(Shutdown::Both).await.unwrap();
        let e = client.read(&mut buf).await.expect_err("read after shutdown(Both)");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::NotConnected, "{e}");
    });
}

#[test]
fn dropping_an_unclosed_flow_resets_the_peer() {
    run(async {
        let (client, mut server) = connected_pair().await;
        drop(client);
        let mut buf = [0u8; 8];
        let e = server.read(&mut buf).await.expect_err("the peer must see a reset, not end of stream");
        assert_eq!(flow::Error::kind(&e), flow::ErrorKind::ConnectionReset, "{e}");
    });
}

#[test]
fn keepalive_is_set_and_bad_values_are_refused() {
    run(async {
        let (mut client, _server) = connected_pair().await;
        let good = Keepalive { idle: Duration::from_secs(30), interval: Duration::from_secs(5), probes: 4 };
        client.set_keepalive(Some(good)).expect("keepalive");
        client.set_keepalive(None).expect("keepalive off");
        for bad in [
            Keepalive { idle: Duration::from_millis(500), ..good },
            Keepalive { interval: Duration::ZERO, ..good },
            Keepalive { idle: Duration::from_secs(40_000), ..good },
            Keepalive { probes: 0, ..good },
            Keepalive { probes: 128, ..good },
        ] {
            let e = client.set_keepalive(Some(bad)).expect_err("out of Linux's range");
            assert!(e.to_string().contains("keepalive"), "{e}");
        }
    });
}

#[test]
fn udp_round_trip_on_ephemeral_ports() {
    run(async {
        let stack = SocketStack::new();
        let a = stack.udp().bind(localhost(0)).await.expect("bind a");
        let b = stack.udp().bind(localhost(0)).await.expect("bind b");
        assert_ne!(a.local_addr().port(), 0);
        assert_ne!(a.local_addr(), b.local_addr());

        let big = pattern(3, 60_000);
        for payload in [&b"ping"[..], &[][..], &big[..]] {
            a.send_to(payload, b.local_addr()).await.expect("send a->b");
            let d = b.recv_from().await.expect("recv at b");
            assert_eq!(d.src, a.local_addr());
            assert_eq!(d.dst, b.local_addr());
            assert_eq!(&d.payload[..], payload);
            b.send_to(&d.payload, d.src).await.expect("send b->a");
            let back = a.recv_from().await.expect("recv at a");
            assert_eq!(back.src, b.local_addr());
            assert_eq!(&back.payload[..], payload);
        }

        let e = a.send_to(&vec![0u8; 65_508], b.local_addr()).await.expect_err("too large");
        assert_eq!(udp::Error::kind(&e), udp::ErrorKind::TooLarge, "{e}");
    });
}

#[test]
fn udp_reports_the_destination_of_datagrams_to_an_unspecified_bind() {
    run(async {
        let stack = SocketStack::new();
        let any = stack.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await.expect("bind 0.0.0.0");
        let sender = stack.udp().bind(localhost(0)).await.expect("bind sender");
        let port = any.local_addr().port();
        for dst in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)] {
            sender.send_to(b"where", SocketAddr::from((dst, port))).await.expect("send");
            let d = any.recv_from().await.expect("recv");
            assert_eq!(d.dst, SocketAddr::from((dst, port)), "the address it was sent to");
            assert_eq!(d.src, sender.local_addr());
        }

        let any6 = stack.udp().bind("[::]:0".parse().unwrap()).await.expect("bind [::]");
        let sender6 = stack.udp().bind("[::1]:0".parse().unwrap()).await.expect("bind [::1]");
        let dst6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, any6.local_addr().port()));
        sender6.send_to(b"where6", dst6).await.expect("send over IPv6");
        let d = any6.recv_from().await.expect("recv over IPv6");
        assert_eq!(d.dst, dst6);
        assert_eq!(d.src, sender6.local_addr());
        assert_eq!(&d.payload[..], b"where6");

        // IPv4 reaches the dual-stack socket too, in IPv4-mapped form.
        sender.send_to(b"mapped", SocketAddr::from((Ipv4Addr::LOCALHOST, dst6.port()))).await.expect("send");
        let d = any6.recv_from().await.expect("recv IPv4 on [::]");
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => SocketAddr::from((v4.to_ipv6_mapped(), a.port())),
            IpAddr::V6(_) => a,
        };
        assert_eq!(d.dst, mapped(SocketAddr::from((Ipv4Addr::LOCALHOST, dst6.port()))));
        assert_eq!(d.src, mapped(sender.local_addr()));
    });
}

#[test]
fn udp_receive_is_cancel_safe() {
    run(async {
        let stack = SocketStack::new();
        let a = stack.udp().bind(localhost(0)).await.unwrap();
        let b = stack.udp().bind(localhost(0)).await.unwrap();
        // A receive abandoned before anything arrived must not eat the
        // datagram sent afterwards.
        assert!(timeout(Duration::from_millis(20), b.recv_from()).await.is_err());
        a.send_to(b"after", b.local_addr()).await.unwrap();
        assert_eq!(&b.recv_from().await.unwrap().payload[..], b"after");
    });
}

#[test]
fn addresses_include_loopback() {
    let addrs = SocketStack::new().addresses();
    assert!(addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{addrs:?}");
}

/// Pings 127.0.0.1 and ::1 and checks the replies.
async fn ping_loopback() -> Result<(), icmp::IcmpError> {
    let icmp = *SocketStack::new().icmp();
    for dst in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
        for seq in [1u16, 2, 0xfffe] {
            let payload = pattern(u64::from(seq), 56);
            let reply = icmp.ping(dst, seq, &payload, Duration::from_secs(5)).await?;
            assert_eq!(reply.seq, seq);
            assert_eq!(reply.from, dst);
            assert_eq!(&reply.payload[..], &payload[..]);
        }
    }
    Ok(())
}

/// A network namespace deleted when dropped, also when the test fails.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("mirage-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs iproute2's `ip` and fails the test if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// Runs `test` on a thread moved into the namespace `ns`, so the sockets it
/// opens live there; the host's own namespace is left alone.
fn run_in_namespace<F: std::future::Future<Output = ()>>(ns: &Netns, test: impl FnOnce() -> F + Send) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).expect("open the namespace");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) with an open namespace file; it moves
                // only this thread, which the test owns and ends.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                run(test());
            })
            .join()
            .expect("the namespaced test passed");
    });
}

#[test]
fn ping_on_the_host_answers_or_explains() {
    let mut result = None;
    run(async { result = Some(ping_loopback().await) });
    match result.expect("ping ran") {
        Ok(()) => {}
        Err(e) => {
            // The host's policy is not ours to change; the error must say how.
            assert_eq!(icmp::Error::kind(&e), icmp::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("net.ipv4.ping_group_range"), "{e}");
            println!("ping sockets are not permitted on this host ({e}); the namespace test covers ping");
        }
    }
}

#[test]
fn ping_replies_unreachables_and_timeouts_in_a_namespace() {
    let ns = Netns::create("ping");
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    // Through /proc rather than sysctl(8), which procps may not provide.
    ip(&["netns", "exec", &ns.0, "sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range"]);
    // A link whose far end never answers: pings across it time out.
    ip(&["-n", &ns.0, "link", "add", "silent0", "type", "veth", "peer", "name", "silent1"]);
    ip(&["-n", &ns.0, "addr", "add", "198.51.100.1/24", "dev", "silent0"]);
    ip(&["-n", &ns.0, "link", "set", "silent0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "silent1", "up"]);
    // A route the kernel refuses at once.
    ip(&["-n", &ns.0, "route", "add", "unreachable", "203.0.113.0/24"]);
    run_in_namespace(&ns, || async {
        ping_loopback().await.expect("ping loopback with ping sockets allowed");
        let icmp = *SocketStack::new().icmp();

        let silent = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
        let e = icmp.ping(silent, 7, b"anyone?", Duration::from_millis(300)).await.expect_err("nobody answers");
        assert_eq!(icmp::Error::kind(&e), icmp::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("198.51.100.2"), "{e}");

        for dst in [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(192, 0, 2, 1)] {
            let e = icmp.ping(IpAddr::V4(dst), 1, b"x", Duration::from_secs(5)).await.expect_err("no route");
            assert_eq!(icmp::Error::kind(&e), icmp::ErrorKind::Unreachable, "{dst}: {e}");
        }
    });
}
