//! Linux as a UDP client of a UDP echo service on our stack, over TAP in a
//! network namespace the test creates (and deletes): `socat` sends
//! datagrams of 5, 1472 (the largest unfragmented) and 4000 bytes
//! (fragmented both ways) and must get each back unchanged.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2) and `socat` (socat); without
//! them the test skips, or fails under CI (`mirage_test_env`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_net_stack_linux_tests::{iface_name, missing, Netns};
use mirage_platform_unix::UnixPlatform;
use mirage_test_env::require;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::stack::Stack;
use mirage_types::udp::{Udp, UdpSocket};

const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
const ECHO_PORT: u16 = 7;

#[test]
fn linux_socat_gets_its_datagrams_echoed_by_our_stack() {
    require!(missing(&[("socat", "socat")]));
    let Some(ns) = Netns::new_or_skip("mirage-udp") else { return };
    let iface = iface_name("u");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = ns.tap(&iface, "10.79.0.1/24").unwrap();
        let config = Ipv4Config { address: Ipv4Cidr::new(OUR_IP, 24).unwrap(), gateway: None };
        let stack = Rc::new(StackBuilder::new(tap, UnixPlatform::new(Vec::new())).ipv4(config).build().await.unwrap());
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        let socket = stack.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT))).await.unwrap();
        tokio::task::spawn_local(async move {
            while let Ok(datagram) = socket.recv_from().await {
                let _ = socket.send_to(&datagram.payload, datagram.src).await;
            }
        });

        for size in [5usize, 1472, 4000] {
            let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let ns_name = ns.name().to_string();
            let sent = payload.clone();
            // socat sends stdin as one datagram (it reads up to -b bytes at
            // once) and prints what comes back, waiting at most -T seconds.
            let out = tokio::task::spawn_blocking(move || {
                let mut child = Command::new("ip")
                    .args(["netns", "exec", &ns_name, "socat", "-b", "65536", "-T", "3", "-"])
                    .arg(format!("UDP:{OUR_IP}:{ECHO_PORT}"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start socat");
                child.stdin.take().unwrap().write_all(&sent).unwrap();
                child.wait_with_output().unwrap()
            })
            .await
            .unwrap();
            assert_eq!(
                out.stdout.len(),
                size,
                "echo of {size} bytes; socat stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout == payload, "the {size}-byte echo differs from what was sent");
        }
        let udp = stack.udp().stats();
        assert!(udp.delivered >= 3 && udp.sent >= 3, "{udp:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
