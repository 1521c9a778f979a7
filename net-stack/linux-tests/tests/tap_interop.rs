//! Our stack on a TAP device whose other end is in a network namespace the
//! test creates (and deletes): Linux pings us, including payloads that
//! fragment, and learns our MAC address by ARP.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2) and `ping` (iputils-ping);
//! without them the test skips, or fails under CI (`mirage_test_env`).

use std::net::Ipv4Addr;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_net_stack_linux_tests::missing;
use mirage_platform_unix::tap::TapNetwork;
use mirage_platform_unix::UnixPlatform;
use mirage_test_env::{require, skip};
use mirage_types::ip::Ipv4Cidr;

const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const LINUX_IP: &str = "10.77.0.1/24";

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!("{:?} failed: {}", args, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the namespace however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

#[test]
fn linux_pings_our_stack_over_tap_with_fragmenting_payloads() {
    require!(missing(&[("ping", "iputils-ping")]));
    let ns = Netns(format!("mirage-nt-{}", std::process::id()));
    let iface = format!("mt{}", std::process::id() % 100_000);
    if let Err(e) = sh(&["ip", "netns", "add", &ns.0]) {
        return skip(format!("cannot create a network namespace (run the tests as root): {e}"));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = TapNetwork::open(&iface).expect("open TAP");
        // The kernel end goes into the namespace; our end keeps its fd.
        let ipns = ["ip", "netns", "exec", ns.0.as_str()];
        sh(&["ip", "link", "set", &iface, "netns", &ns.0]).unwrap();
        sh(&[&ipns[..], &["ip", "addr", "add", LINUX_IP, "dev", &iface]].concat()).unwrap();
        sh(&[&ipns[..], &["ip", "link", "set", &iface, "up"]].concat()).unwrap();
        let platform = UnixPlatform::new(Vec::new());
        let config = Ipv4Config { address: Ipv4Cidr::new(OUR_IP, 24).unwrap(), gateway: None };
        let stack = Rc::new(StackBuilder::new(tap, platform).ipv4(config).build().await.unwrap());
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        for size in ["56", "1472", "4000"] {
            let ns_name = ns.0.clone();
            let out = tokio::task::spawn_blocking(move || {
                sh(&["ip", "netns", "exec", &ns_name, "ping", "-c", "3", "-W", "2", "-s", size, "10.77.0.2"])
            })
            .await
            .unwrap();
            let out = out.unwrap_or_else(|e| panic!("ping -s {size}: {e}"));
            assert!(out.contains("3 received"), "ping -s {size}:\n{out}");
        }
        let neigh = sh(&[&ipns[..], &["ip", "neigh", "show", "dev", &iface]].concat()).unwrap();
        let our_mac = mirage_types::net::NetworkDevice::mac(stack.ethernet().device()).to_string();
        assert!(neigh.contains("10.77.0.2") && neigh.contains(&our_mac), "ip neigh:\n{neigh}");
        let learned = stack.arp().with_cache(|c| c.entries().any(|(ip, _)| ip == Ipv4Addr::new(10, 77, 0, 1)));
        assert!(learned, "our ARP cache learned Linux's address");
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
