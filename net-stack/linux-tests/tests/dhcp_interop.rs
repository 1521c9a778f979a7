//! Our DHCP client gets a lease from dnsmasq running in a network namespace
//! the test creates (and deletes), over TAP, and renews it at T1.
//!
//! dnsmasq's shortest lease is 2 minutes, so the test forces T1 to 10 s
//! with `--dhcp-option=option:T1,10` and checks that the client renews
//! then: a unicast REQUEST to dnsmasq answered by an ACK that extends the
//! lease.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2) and `dnsmasq` (dnsmasq-base);
//! without them the test skips, or fails under CI (`mirage_test_env`).

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::dhcp::{DhcpConfig, DhcpState};
use mirage_net_stack::stack::StackBuilder;
use mirage_net_stack_linux_tests::{iface_name, missing, KillOnDrop, Netns};
use mirage_platform_unix::UnixPlatform;
use mirage_test_env::require;
use mirage_types::icmp::Icmp;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::stack::Stack;

const LINUX_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);

#[test]
fn dnsmasq_leases_us_an_address_and_renews_it_at_t1() {
    require!(missing(&[("dnsmasq", "dnsmasq-base")]));
    let Some(ns) = Netns::new_or_skip("mirage-dhcp") else { return };
    let iface = iface_name("d");
    let dir = std::env::temp_dir().join(format!("mirage-dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = ns.tap(&iface, &format!("{LINUX_IP}/24")).unwrap();
        let leases = dir.join("leases");
        let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", ns.name(), "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0"])
            .arg(format!("--interface={iface}"))
            .arg("--bind-interfaces")
            .arg("--dhcp-range=10.78.0.50,10.78.0.60,255.255.255.0,2m")
            .arg("--dhcp-option=option:T1,10")
            .arg("--dhcp-option=option:dns-server,10.78.0.53")
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg("--log-dhcp")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        let _dnsmasq = KillOnDrop(dnsmasq);

        let platform = UnixPlatform::new(Vec::new());
        let stack = Rc::new(StackBuilder::new(tap, platform).dhcp(DhcpConfig::default()).build().await.unwrap());
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        let dhcp = || stack.dhcp().expect("built with DHCP");

        // DISCOVER, OFFER, REQUEST, ACK, then 4 s of ARP probing: well
        // within 30 s unless something is wrong.
        let mut waited = 0;
        while dhcp().state() != DhcpState::Bound {
            assert!(waited < 300, "no lease after 30 s; dnsmasq log:\n{}", dnsmasq_log(&dir));
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        let lease = dhcp().lease().unwrap();
        let address = lease.address.address();
        assert!(
            Ipv4Cidr::new(Ipv4Addr::new(10, 78, 0, 0), 24).unwrap().contains(address)
                && (50..=60).contains(&address.octets()[3]),
            "{lease}"
        );
        assert_eq!(lease.address.prefix_len(), 24);
        assert_eq!(lease.server, LINUX_IP);
        assert_eq!(lease.dns_servers.as_slice(), [Ipv4Addr::new(10, 78, 0, 53)]);
        assert_eq!(lease.duration, Some(Duration::from_secs(120)));
        assert_eq!(lease.renew_at, Some(lease.obtained + Duration::from_secs(10)), "T1 from dnsmasq");
        assert_eq!(stack.addresses(), [IpAddr::V4(address)]);

        // The address works both ways.
        let reply = stack.icmp().ping(IpAddr::V4(LINUX_IP), 1, b"leased", Duration::from_secs(2)).await;
        assert!(reply.is_ok(), "ping from the leased address: {reply:?}");
        let ns_name = ns.name().to_string();
        let target = address.to_string();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("ip").args(["netns", "exec", &ns_name, "ping", "-c", "2", "-W", "2", &target]).output()
        })
        .await
        .unwrap();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("2 received"), "Linux pings the leased address:\n{text}");
        }

        // Renewal at T1 = 10 s: the lease is extended without a restart.
        let mut waited = 0;
        while dhcp().lease().is_none_or(|l| l.obtained == lease.obtained) {
            assert!(waited < 300, "no renewal 30 s after binding; dnsmasq log:\n{}", dnsmasq_log(&dir));
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        let renewed = dhcp().lease().unwrap();
        assert_eq!(renewed.address, lease.address);
        assert!(renewed.obtained >= lease.renew_at.unwrap(), "renewed at T1: {renewed:?}");
        assert!(renewed.expires_at > lease.expires_at);
        assert_eq!(dhcp().stats().restarts, 0);
        assert_eq!(dhcp().send_errors(), 0);
        let log = dnsmasq_log(&dir);
        assert!(log.matches("DHCPACK").count() >= 2, "dnsmasq acknowledged the renewal:\n{log}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn dnsmasq_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default()
}
