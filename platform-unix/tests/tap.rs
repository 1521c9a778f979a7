//! `TapNetwork` against the Linux kernel: a TAP interface moved into a
//! network namespace this test creates (and deletes, also on failure), where
//! the kernel answers our ARP request.
//!
//! Needs root (or CAP_NET_ADMIN) and iproute2's `ip`; skips when
//! `/dev/net/tun` is absent, or fails under CI (`mirage_test_env`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use mirage_platform_unix::tap::{TapError, TapNetwork, TapOptions};
use mirage_test_env::require;
use mirage_types::net::{Error as _, ErrorKind, MacAddress, NetworkDevice, ETHERNET_HEADER_LEN};
use tokio::task::LocalSet;
use tokio::time::timeout;

/// Every wait in these tests ends within this.
const LIMIT: Duration = Duration::from_secs(30);

/// The kernel's side of the link, and ours (TEST-NET-1, RFC 5737: never
/// routed, and only ever configured inside the test's namespace).
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

const ETHERTYPE_ARP: u16 = 0x0806;

/// Why TAP devices cannot be opened here, if they cannot.
fn missing_tun() -> Option<&'static str> {
    (!Path::new("/dev/net/tun").exists()).then_some(
        "/dev/net/tun is absent (the tun driver: a kernel with CONFIG_TUN, the device passed into a container)",
    )
}

fn run<F: std::future::Future<Output = ()>>(test: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    LocalSet::new().block_on(&rt, async {
        timeout(LIMIT, test).await.expect("test took longer than its time limit");
    });
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// A network namespace deleted when dropped, also when the test panics.
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

/// An interface name unique to this process (at most 15 bytes).
fn tap_name(tag: &str) -> String {
    format!("mt{tag}{}", std::process::id())
}

/// Writes an ARP request (RFC 826) from `mac`/`OUR_IP` for `KERNEL_IP`.
fn fill_arp_request(mac: MacAddress, buf: &mut [u8]) {
    buf.fill(0);
    buf[0..6].copy_from_slice(&MacAddress::BROADCAST.0);
    buf[6..12].copy_from_slice(&mac.0);
    buf[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut buf[ETHERNET_HEADER_LEN..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac.0);
    arp[14..18].copy_from_slice(&OUR_IP.octets());
    arp[24..28].copy_from_slice(&KERNEL_IP.octets());
}

/// The sender's MAC if `frame` is the kernel's ARP reply to `mac`.
fn arp_reply_to(frame: &Bytes, mac: MacAddress) -> Option<MacAddress> {
    let arp = frame.get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + 28)?;
    let is_reply = frame[0..6] == mac.0
        && frame[12..14] == ETHERTYPE_ARP.to_be_bytes()
        && arp[6..8] == 2u16.to_be_bytes()
        && arp[14..18] == KERNEL_IP.octets()
        && arp[18..24] == mac.0
        && arp[24..28] == OUR_IP.octets();
    is_reply.then(|| MacAddress(arp[8..14].try_into().expect("6 bytes")))
}

#[test]
fn arp_with_the_kernel_in_a_namespace() {
    require!(missing_tun());
    let ns = Netns::create("tap");
    let name = tap_name("a");
    run(async {
        let dev = TapNetwork::open(&name).expect("create the TAP interface");
        assert_eq!(dev.name(), name);
        assert!(dev.mac().is_local() && dev.mac().is_unicast(), "{}", dev.mac());
        assert_eq!(dev.mtu(), 1500, "a new TAP interface has the Ethernet MTU");
        let mac = dev.mac();

        // Moving the interface downs it: a transmit now waits instead of failing.
        ip(&["link", "set", &name, "netns", &ns.0]);
        let arp_len = ETHERNET_HEADER_LEN + 28;
        let early = timeout(Duration::from_millis(300), dev.transmit(arp_len, |b| fill_arp_request(mac, b))).await;
        assert!(early.is_err(), "transmit on a down interface must wait, got {early:?}");

        // A transmit pending while the interface comes up goes out once it is up.
        let pending = async {
            dev.transmit(arp_len, |b| fill_arp_request(mac, b)).await.expect("transmit the ARP request");
        };
        let bring_up = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ip(&["-n", &ns.0, "addr", "add", &format!("{KERNEL_IP}/24"), "dev", &name]);
            ip(&["-n", &ns.0, "link", "set", &name, "up"]);
        };
        futures::join!(pending, bring_up);

        // The kernel answers; ignore its other chatter (IPv6 router
        // solicitations and the like) and re-ask in case a request was sent
        // before the address was in place.
        let mut kernel_mac = None;
        for _attempt in 0..10 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(frame) = tokio::time::timeout_at(deadline, dev.receive()).await {
                let frame = frame.expect("receive");
                assert!(frame.len() <= dev.mtu() + ETHERNET_HEADER_LEN + 4, "oversized frame");
                if let Some(found) = arp_reply_to(&frame, mac) {
                    kernel_mac = Some(found);
                    break;
                }
            }
            if kernel_mac.is_some() {
                break;
            }
            dev.transmit(arp_len, |b| fill_arp_request(mac, b)).await.expect("transmit the ARP request again");
        }
        let kernel_mac = kernel_mac.expect("the kernel answered our ARP request");
        assert_ne!(kernel_mac, mac, "the device must not use the host side's MAC");

        let stats = dev.stats();
        assert!(stats.tx_frames >= 1 && stats.tx_bytes >= arp_len as u64, "{stats:?}");
        assert!(stats.rx_frames >= 1 && stats.rx_bytes >= arp_len as u64, "{stats:?}");

        // The largest frame is taken, one byte more is refused before `fill` runs.
        let max = dev.mtu() + ETHERNET_HEADER_LEN;
        dev.transmit(max, |b| fill_arp_request(mac, b)).await.expect("a frame of mtu + 14 bytes");
        let mut filled = false;
        let e = dev.transmit(max + 1, |_| filled = true).await.expect_err("a frame of mtu + 15 bytes");
        assert_eq!(e.kind(), ErrorKind::FrameTooLarge, "{e}");
        assert!(!filled, "fill ran for a refused frame");
        assert!(e.to_string().contains(&format!("{}", max + 1)), "{e}");
        assert_eq!(dev.stats().tx_dropped, 1);

        // Deleting the interface under us ends receiving with Disconnected.
        ip(&["-n", &ns.0, "link", "del", &name]);
        let e = timeout(Duration::from_secs(5), async {
            loop {
                if let Err(e) = dev.receive().await {
                    break e;
                }
            }
        })
        .await
        .expect("receive noticed the deletion");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn given_mac_is_reported() {
    require!(missing_tun());
    let name = tap_name("m");
    run(async {
        let mac: MacAddress = "02:00:5e:00:53:01".parse().unwrap();
        let dev = TapNetwork::open_with(&name, TapOptions::with_mac(mac)).expect("create the TAP interface");
        assert_eq!(dev.mac(), mac);
        // A second attach to the same single-queue interface is refused
        // with a reason.
        let group: MacAddress = "01:00:5e:00:00:01".parse().unwrap();
        let e = TapNetwork::open_with(&name, TapOptions::with_mac(group)).expect_err("multicast MAC");
        assert!(matches!(e, TapError::InvalidMac { .. }), "{e}");
        let e = TapNetwork::open(&name).expect_err("interface busy");
        assert!(matches!(e, TapError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains(&name), "{e}");
    });
    // The interface was not persistent: it went away with the device.
    let gone = Command::new("ip").args(["link", "show", &name]).output().expect("run ip");
    assert!(!gone.status.success(), "{name} outlived its device");
}

#[test]
fn bad_interface_names_are_refused_with_the_reason() {
    run(async {
        for (bad, says) in [("", "empty"), ("much-too-long-name", "15 bytes"), ("a/b", "'/'"), ("..", "reserved")] {
            let e = TapNetwork::open(bad).expect_err(bad);
            assert!(matches!(e, TapError::InvalidName { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains(says), "{bad:?}: {e}");
            assert_eq!(e.kind(), ErrorKind::Other);
        }
    });
}

#[test]
fn a_non_tap_interface_is_refused() {
    require!(missing_tun());
    run(async {
        let e = TapNetwork::open("lo").expect_err("lo is not a TAP interface");
        assert!(matches!(e, TapError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("not a TAP interface"), "{e}");
    });
}
