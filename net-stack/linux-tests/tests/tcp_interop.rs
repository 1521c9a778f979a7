//! Linux as a TCP peer of our stack, over TAP in a network namespace each
//! test creates (and deletes): `curl` fetches 10 MiB over HTTP, and `nc`
//! (netcat-openbsd) pushes bytes to an echo service and reads them back,
//! byte-exact; on a clean link, under `tc netem` delay, loss, reordering
//! and duplication, and with Linux's SACK, timestamps and window scaling
//! each turned off.
//!
//! The services are test-local (an echo and a one-file HTTP responder on
//! our stack, in this process), so the tests need no other binary.
//!
//! Needs root, /dev/net/tun, `ip` and `tc` (iproute2), `curl` (curl) and
//! `nc` (netcat-openbsd); without them each test prints SKIP and passes.
//! Every command runs under a deadline, so a stall fails instead of
//! hanging.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_net_stack_linux_tests::{iface_name, missing, Netns};
use mirage_platform_unix::UnixPlatform;
use mirage_types::flow::Flow;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpListener};

const ECHO_PORT: u16 = 7;
const HTTP_PORT: u16 = 8080;

/// Deterministic pseudo-random bytes (xorshift).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn echo<F: Flow>(mut flow: F) {
    let mut buf = vec![0u8; 64 * 1024];
    // Each pass echoes one read; it ends at end of stream or an error.
    loop {
        match flow.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if flow.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = flow.close().await;
}

/// Answers one HTTP request with `body`, then closes (reading the
/// request head first, so the close sends a FIN, not a reset).
async fn http_once<F: Flow>(mut flow: F, body: Rc<Vec<u8>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // Each pass reads one chunk of the head, at most 64 KiB in all.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match flow.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    if flow.write_all(header.as_bytes()).await.is_ok() && flow.write_all(&body).await.is_ok() {
        let _ = flow.close().await;
    }
}

/// Runs `program args` in the namespace under `timeout`, with `input` on
/// its stdin; returns its stdout, or an error with its stderr.
async fn run_in(ns: &str, args: &[&str], input: Option<Vec<u8>>, limit: Duration) -> Result<Vec<u8>, String> {
    let secs = limit.as_secs().to_string();
    let mut argv: Vec<String> = ["timeout", &secs, "ip", "netns", "exec", ns].iter().map(|s| s.to_string()).collect();
    argv.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{argv:?}: {e}"))?;
        let writer = input.map(|data| {
            let mut stdin = child.stdin.take().expect("stdin was piped");
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&data);
            })
        });
        let out = child.wait_with_output().map_err(|e| format!("{argv:?}: {e}"))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if !out.status.success() {
            return Err(format!("{argv:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(out.stdout)
    })
    .await
    .map_err(|e| format!("joining the command: {e}"))?
}

/// Sets up a namespace with TAP interface `tag` on 10.`net`.0.0/24
/// (Linux .1, our stack .2) and runs `body` with the namespace's name and
/// the interface's, with our echo and HTTP services running.
fn with_stack<Fut>(
    prefix: &str,
    tag: &str,
    net: u8,
    body_len: usize,
    body: impl FnOnce(String, String, Rc<Vec<u8>>) -> Fut,
) where
    Fut: std::future::Future<Output = ()>,
{
    if let Some(reason) =
        missing(&[("tc", "iproute2"), ("curl", "curl"), ("nc", "netcat-openbsd"), ("timeout", "coreutils")])
    {
        println!("SKIP: {reason}");
        return;
    }
    let ns = match Netns::new(prefix) {
        Ok(ns) => ns,
        Err(e) => {
            println!("SKIP: cannot create a network namespace: {e}");
            return;
        }
    };
    let iface = iface_name(tag);
    let ours = Ipv4Addr::new(10, net, 0, 2);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = ns.tap(&iface, &format!("10.{net}.0.1/24")).unwrap();
        let config = Ipv4Config { address: Ipv4Cidr::new(ours, 24).unwrap(), gateway: None };
        let stack = Rc::new(StackBuilder::new(tap, UnixPlatform::new(Vec::new())).ipv4(config).build().await.unwrap());
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        let echo_listener = stack.tcp().listen(SocketAddr::from((ours, ECHO_PORT)), 16).await.unwrap();
        tokio::task::spawn_local(async move {
            while let Ok(flow) = echo_listener.accept().await {
                tokio::task::spawn_local(echo(flow));
            }
        });
        let file = Rc::new(pattern(u64::from(net), body_len));
        let http_listener = stack.tcp().listen(SocketAddr::from((ours, HTTP_PORT)), 16).await.unwrap();
        let served = file.clone();
        tokio::task::spawn_local(async move {
            while let Ok(flow) = http_listener.accept().await {
                tokio::task::spawn_local(http_once(flow, served.clone()));
            }
        });
        body(ns.name().to_string(), iface.clone(), file).await;
        // Every connection was closed by both sides; give the last FINs a
        // moment, then nothing but TIME-WAIT may remain.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let u = stack.usage();
        assert_eq!(u.tcp_connections, u.tcp_time_wait, "connections left open: {u:?}");
    });
}

async fn curl_fetch(ns: &str, ours: Ipv4Addr, file: &[u8]) {
    let url = format!("http://{ours}:{HTTP_PORT}/file");
    let got = run_in(ns, &["curl", "-sS", "--max-time", "60", &url], None, Duration::from_secs(70)).await.unwrap();
    assert_eq!(got.len(), file.len(), "curl got {} of {} bytes", got.len(), file.len());
    assert!(got == file, "curl's copy differs from the file served");
}

async fn nc_echo(ns: &str, ours: Ipv4Addr, len: usize, seed: u64) {
    let data = pattern(seed, len);
    // -N: shut the socket's write side at end of stdin, then read until
    // our side closes.
    let got = run_in(ns, &["nc", "-N", &ours.to_string(), &ECHO_PORT.to_string()], Some(data.clone()), {
        Duration::from_secs(90)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), data.len(), "nc got {} of {} bytes back", got.len(), data.len());
    assert!(got == data, "the echo differs from what nc sent");
}

#[test]
fn curl_and_nc_move_10_mib_byte_exact() {
    with_stack("mirage-tcp", "t", 81, 10 << 20, |ns, _iface, file| async move {
        let ours = Ipv4Addr::new(10, 81, 0, 2);
        curl_fetch(&ns, ours, &file).await;
        nc_echo(&ns, ours, 10 << 20, 1).await;
    });
}

#[test]
fn curl_and_nc_under_netem_delay_loss_reordering_and_duplication() {
    with_stack("mirage-tcpnetem", "n", 82, 2 << 20, |ns, iface, file| async move {
        let ours = Ipv4Addr::new(10, 82, 0, 2);
        let netem = [
            "tc",
            "qdisc",
            "add",
            "dev",
            &iface,
            "root",
            "netem",
            "delay",
            "20ms",
            "loss",
            "5%",
            "reorder",
            "25%",
            "duplicate",
            "1%",
        ];
        if let Err(e) = run_in(&ns, &netem, None, Duration::from_secs(10)).await {
            // Kernels built without CONFIG_NET_SCH_NETEM have no netem.
            println!("SKIP: tc netem is unavailable here: {e}");
            return;
        }
        curl_fetch(&ns, ours, &file).await;
        nc_echo(&ns, ours, 2 << 20, 2).await;
    });
}

#[test]
fn nc_echo_with_linux_sack_timestamps_and_window_scaling_each_off() {
    with_stack("mirage-tcpopts", "o", 83, 1 << 20, |ns, _iface, _file| async move {
        let ours = Ipv4Addr::new(10, 83, 0, 2);
        for (i, option) in
            ["net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling"].into_iter().enumerate()
        {
            run_in(&ns, &["sysctl", "-qw", &format!("{option}=0")], None, Duration::from_secs(10)).await.unwrap();
            nc_echo(&ns, ours, 4 << 20, 10 + i as u64).await;
            run_in(&ns, &["sysctl", "-qw", &format!("{option}=1")], None, Duration::from_secs(10)).await.unwrap();
        }
    });
}
