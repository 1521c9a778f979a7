//! The DHCP client of a NetStack against small DHCP servers written here,
//! on the virtual switch, in virtual time.
//!
//! Each server is a NetStack with a static address serving UDP port 67 with
//! the wire types; it hands out addresses from a small pool, can be made
//! silent or to refuse (NAK), and records what it received.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::dhcp::{DhcpConfig, DhcpState};
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{AddressTimeout, NetStack, StackBuilder, ADDRESS_POLL_INTERVAL};
use mirage_net_stack::switch::{LinkFaults, Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::wire::dhcp::AddressList;
use mirage_net_stack::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
use mirage_types::icmp::Icmp;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::MacAddress;
use mirage_types::stack::Stack;
use mirage_types::time::{Instant, MonotonicClock, Sleep};
use mirage_types::udp::{Udp, UdpSocket};

type TestStack = NetStack<SwitchPort, VirtualPlatform>;

const CLIENT_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xc]);
const SERVER_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
const POOL: [Ipv4Addr; 3] = [Ipv4Addr::new(10, 0, 0, 50), Ipv4Addr::new(10, 0, 0, 51), Ipv4Addr::new(10, 0, 0, 52)];

/// Virtual time any single test may take at most.
const LIMIT: Duration = Duration::from_secs(3600);

/// What a test server received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    at: Instant,
    message_type: DhcpMessageType,
    /// The IP source: 0.0.0.0 until the client holds a lease.
    src: IpAddr,
    /// The IP destination: broadcast, or the server when renewing.
    dst: Ipv4Addr,
    client_ip: Ipv4Addr,
    requested_ip: Option<Ipv4Addr>,
}

/// How a test server behaves; the cells can change while it runs.
struct ServerControl {
    lease_secs: u32,
    /// Answer nothing.
    silent: Cell<bool>,
    /// Answer only REQUESTs that extend a lease (ciaddr set): a second
    /// server that can take over at T2 but does not hand out addresses.
    only_extend: bool,
    /// NAK every REQUEST.
    nak: Cell<bool>,
    declined: RefCell<BTreeSet<Ipv4Addr>>,
    seen: RefCell<Vec<Seen>>,
}

impl ServerControl {
    fn new(lease_secs: u32) -> Rc<ServerControl> {
        Rc::new(ServerControl {
            lease_secs,
            silent: Cell::new(false),
            only_extend: false,
            nak: Cell::new(false),
            declined: RefCell::default(),
            seen: RefCell::default(),
        })
    }

    fn seen(&self, message_type: DhcpMessageType) -> Vec<Seen> {
        self.seen.borrow().iter().filter(|s| s.message_type == message_type).copied().collect()
    }
}

/// Serves DHCP on `stack` for ever.
async fn serve(stack: Rc<TestStack>, me: Ipv4Addr, control: Rc<ServerControl>) {
    let socket = stack.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67))).await.unwrap();
    let clock = stack.platform().clone();
    loop {
        let datagram = socket.recv_from().await.unwrap();
        let Ok(packet) = DhcpPacket::new_checked(&datagram.payload[..]) else { continue };
        let Ok(request) = DhcpRepr::parse(&packet) else { continue };
        let IpAddr::V4(dst) = datagram.dst.ip() else { continue };
        control.seen.borrow_mut().push(Seen {
            at: clock.now(),
            message_type: request.message_type,
            src: datagram.src.ip(),
            dst,
            client_ip: request.client_ip,
            requested_ip: request.requested_ip,
        });
        if control.silent.get() {
            continue;
        }
        let extending = !request.client_ip.is_unspecified();
        let (reply_type, address) = match request.message_type {
            DhcpMessageType::Discover if !control.only_extend => {
                let declined = control.declined.borrow();
                let Some(&free) = POOL.iter().find(|a| !declined.contains(a)) else { continue };
                (DhcpMessageType::Offer, free)
            }
            DhcpMessageType::Request if control.only_extend && !extending => continue,
            // A REQUEST naming another server is that server's business.
            DhcpMessageType::Request if request.server_identifier.is_some_and(|s| s != me) => continue,
            DhcpMessageType::Request if control.nak.get() => (DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED),
            DhcpMessageType::Request => {
                let Some(address) = request.requested_ip.or(extending.then_some(request.client_ip)) else { continue };
                (DhcpMessageType::Ack, address)
            }
            DhcpMessageType::Decline => {
                control.declined.borrow_mut().extend(request.requested_ip);
                continue;
            }
            _ => continue,
        };
        let grants = reply_type != DhcpMessageType::Nak;
        let reply = DhcpRepr {
            message_type: reply_type,
            transaction_id: request.transaction_id,
            secs: 0,
            broadcast: false,
            client_hardware_addr: request.client_hardware_addr,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: address,
            server_ip: Ipv4Addr::UNSPECIFIED,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            subnet_mask: grants.then_some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: if grants { AddressList::from_slice(&[SERVER_A]) } else { AddressList::new() },
            dns_servers: if grants { AddressList::from_slice(&[DNS]) } else { AddressList::new() },
            requested_ip: None,
            lease_duration: grants.then_some(control.lease_secs),
            server_identifier: Some(me),
            parameter_request_list: None,
            max_message_size: None,
            renew_duration: None,
            rebind_duration: None,
            client_identifier: None,
        };
        let mut bytes = vec![0u8; reply.buffer_len()];
        reply.emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]));
        // Broadcast replies reach the client whatever its configuration.
        let _ = socket.send_to(&bytes, SocketAddr::from((Ipv4Addr::BROADCAST, 68))).await;
    }
}

struct Net {
    sim: Simulation,
    clock: VirtualClock,
    switch: VirtualSwitch,
    next_seed: Cell<u64>,
}

impl Net {
    fn new(seed: u64) -> Net {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        let switch = VirtualSwitch::new(&clock, seed);
        Net { sim, clock, switch, next_seed: Cell::new(seed * 100) }
    }

    /// A stack on a new port, its input loop running.
    fn stack(
        &self,
        mac: MacAddress,
        faults: LinkFaults,
        configure: impl FnOnce(StackBuilder<SwitchPort, VirtualPlatform>) -> StackBuilder<SwitchPort, VirtualPlatform>,
    ) -> Rc<TestStack> {
        let port = self.switch.add_port(mac);
        self.switch.set_faults(&port, faults);
        self.next_seed.set(self.next_seed.get() + 1);
        let platform = VirtualPlatform::new(&self.sim, self.next_seed.get());
        let stack = self
            .sim
            .run_until(configure(StackBuilder::new(port, platform)).build(), Duration::from_secs(1))
            .unwrap()
            .unwrap();
        let stack = Rc::new(stack);
        let runner = stack.clone();
        self.sim.spawn(async move {
            runner.run().await.expect("the virtual link never fails");
        });
        stack
    }

    fn server(&self, me: Ipv4Addr, control: Rc<ServerControl>) -> Rc<TestStack> {
        let mac = MacAddress([2, 0, 0, 0, 0, me.octets()[3]]);
        let stack = self.stack(mac, LinkFaults::default(), |b| b.ipv4(static_config(me)));
        self.sim.spawn(serve(stack.clone(), me, control));
        stack
    }

    fn client(&self, faults: LinkFaults) -> Rc<TestStack> {
        self.stack(CLIENT_MAC, faults, |b| b.dhcp(DhcpConfig::default()))
    }

    /// Runs the simulation until `done` holds, checking every 100 ms of
    /// virtual time, at most [`LIMIT`].
    fn run_until(&self, mut done: impl FnMut() -> bool) {
        let clock = self.clock.clone();
        self.sim
            .run_until(
                async move {
                    while !done() {
                        clock.sleep(Duration::from_millis(100)).await;
                    }
                },
                LIMIT,
            )
            .unwrap();
    }

    /// Runs the simulation for `d` of virtual time.
    fn run_for(&self, d: Duration) {
        let clock = self.clock.clone();
        self.sim.run_until(async move { clock.sleep(d).await }, d + Duration::from_secs(1)).unwrap();
    }
}

fn static_config(ip: Ipv4Addr) -> Ipv4Config {
    Ipv4Config { address: Ipv4Cidr::new(ip, 24).unwrap(), gateway: None }
}

fn bound(stack: &TestStack) -> bool {
    stack.dhcp().unwrap().state() == DhcpState::Bound
}

#[test]
fn lease_is_obtained_and_configures_the_stack() {
    let net = Net::new(1);
    let control = ServerControl::new(3600);
    let server = net.server(SERVER_A, control.clone());
    let client = net.client(LinkFaults::default());
    assert!(client.addresses().is_empty(), "no address before the lease");
    net.run_until(|| bound(&client));
    let lease = client.dhcp().unwrap().lease().unwrap();
    assert_eq!(lease.address, Ipv4Cidr::new(POOL[0], 24).unwrap());
    assert_eq!((lease.gateway, lease.dns_servers.as_slice(), lease.server), (Some(SERVER_A), &[DNS][..], SERVER_A));
    assert_eq!(lease.duration, Some(Duration::from_secs(3600)));
    assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])]);
    assert_eq!(client.ipv4().config().unwrap().gateway, Some(SERVER_A));
    // The exchange: one DISCOVER, one REQUEST for the offer; and the probe
    // (three probes 1 s apart, then 2 s of listening) took place before the
    // address was used.
    assert_eq!(control.seen(DhcpMessageType::Discover).len(), 1);
    let requests = control.seen(DhcpMessageType::Request);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].requested_ip, Some(POOL[0]));
    assert!(net.clock.now() >= Instant::from_millis(4000), "bound at {} before the probe ended", net.clock.now());
    // The configured address works: the server can ping us and we it.
    let ok = net
        .sim
        .run_until(
            async {
                let there = client.icmp().ping(IpAddr::V4(SERVER_A), 1, b"dhcp", Duration::from_secs(2)).await;
                let back = server.icmp().ping(IpAddr::V4(POOL[0]), 2, b"dhcp", Duration::from_secs(2)).await;
                there.is_ok() && back.is_ok()
            },
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(ok, "pings across the leased address");
}

#[test]
fn renewal_at_t1_is_unicast_to_the_server_and_extends_the_lease() {
    let net = Net::new(2);
    let control = ServerControl::new(100);
    net.server(SERVER_A, control.clone());
    let client = net.client(LinkFaults::default());
    net.run_until(|| bound(&client));
    let first = client.dhcp().unwrap().lease().unwrap();
    let t1 = first.renew_at.unwrap();
    assert_eq!(t1, first.obtained + Duration::from_secs(50));
    net.run_until(|| client.dhcp().unwrap().lease().is_some_and(|l| l.expires_at > first.expires_at));
    let renewals: Vec<Seen> = control.seen(DhcpMessageType::Request).into_iter().filter(|s| s.at >= t1).collect();
    assert_eq!(renewals.len(), 1, "{renewals:?}");
    assert_eq!((renewals[0].at, renewals[0].dst, renewals[0].client_ip), (t1, SERVER_A, POOL[0]));
    let renewed = client.dhcp().unwrap().lease().unwrap();
    assert_eq!(renewed.address, first.address);
    assert_eq!(renewed.expires_at, Some(t1 + Duration::from_secs(100)));
    // Three renewals later the address never dropped out.
    for _ in 0..3 {
        net.run_for(Duration::from_secs(50));
        assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])]);
    }
    assert_eq!(client.dhcp().unwrap().stats().restarts, 0);
}

#[test]
fn silent_server_at_t1_leads_to_rebinding_at_t2_with_another_server() {
    let net = Net::new(3);
    let a = ServerControl::new(200);
    net.server(SERVER_A, a.clone());
    let b = Rc::new(ServerControl { only_extend: true, ..Rc::into_inner(ServerControl::new(400)).unwrap() });
    net.server(SERVER_B, b.clone());
    let client = net.client(LinkFaults::default());
    net.run_until(|| bound(&client));
    let first = client.dhcp().unwrap().lease().unwrap();
    a.silent.set(true);
    net.run_until(|| client.dhcp().unwrap().lease().is_some_and(|l| l.server == SERVER_B));
    let t2 = first.rebind_at.unwrap();
    let to_a: Vec<Seen> = a.seen(DhcpMessageType::Request).into_iter().filter(|s| s.dst == SERVER_A).collect();
    assert!(!to_a.is_empty() && to_a.iter().all(|s| s.at >= first.renew_at.unwrap() && s.at < t2), "{to_a:?}");
    let rebind: Vec<Seen> =
        b.seen(DhcpMessageType::Request).into_iter().filter(|s| !s.client_ip.is_unspecified()).collect();
    assert_eq!((rebind[0].at, rebind[0].dst, rebind[0].client_ip), (t2, Ipv4Addr::BROADCAST, POOL[0]));
    let lease = client.dhcp().unwrap().lease().unwrap();
    assert_eq!(lease.expires_at, Some(t2 + Duration::from_secs(400)));
    assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])], "the address stayed in use");
}

#[test]
fn nak_at_renewal_drops_the_address_and_starts_over() {
    let net = Net::new(4);
    let control = ServerControl::new(100);
    net.server(SERVER_A, control.clone());
    let client = net.client(LinkFaults::default());
    net.run_until(|| bound(&client));
    control.nak.set(true);
    net.run_until(|| client.dhcp().unwrap().state() != DhcpState::Bound);
    net.run_until(|| client.dhcp().unwrap().state() == DhcpState::Init || client.addresses().is_empty());
    assert!(client.addresses().is_empty(), "a NAK takes the address away");
    control.nak.set(false);
    net.run_until(|| bound(&client));
    let nak_at = control.seen(DhcpMessageType::Request).iter().find(|s| s.dst == SERVER_A).unwrap().at;
    assert!(control.seen(DhcpMessageType::Discover).iter().any(|s| s.at >= nak_at), "started over with a DISCOVER");
    assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])]);
    assert!(client.dhcp().unwrap().stats().restarts >= 1);
}

#[test]
fn conflicting_host_makes_the_client_decline_and_take_another_address() {
    let net = Net::new(5);
    let control = ServerControl::new(3600);
    net.server(SERVER_A, control.clone());
    // A host that already uses the first pool address answers the probe.
    let squatter =
        net.stack(MacAddress([2, 0, 0, 0, 0, 0x99]), LinkFaults::default(), |b| b.ipv4(static_config(POOL[0])));
    let client = net.client(LinkFaults::default());
    net.run_until(|| bound(&client));
    let declines = control.seen(DhcpMessageType::Decline);
    assert_eq!(declines.len(), 1);
    assert_eq!(declines[0].requested_ip, Some(POOL[0]));
    let second_discover = control.seen(DhcpMessageType::Discover)[1];
    assert!(second_discover.at - declines[0].at >= Duration::from_secs(10), "waited before starting over");
    assert_eq!(client.addresses(), [IpAddr::V4(POOL[1])]);
    assert_eq!(client.dhcp().unwrap().stats().declines, 1);
    assert_eq!(squatter.addresses(), [IpAddr::V4(POOL[0])]);
}

#[test]
fn lossy_link_still_ends_bound() {
    let lossy = LinkFaults { loss: 0.3, delay: Duration::from_millis(2), ..LinkFaults::default() };
    for seed in 10..16 {
        let net = Net::new(seed);
        let control = ServerControl::new(600);
        net.server(SERVER_A, control.clone());
        let client = net.client(lossy);
        net.run_until(|| bound(&client));
        assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])], "seed {seed}");
        // And it keeps the lease through renewals over the same lossy link.
        net.run_for(Duration::from_secs(1200));
        assert!(client.dhcp().unwrap().lease().is_some(), "seed {seed}: lease kept");
        assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])], "seed {seed}");
    }
}

#[test]
fn static_fallback_applies_without_a_server_and_yields_to_a_lease() {
    let net = Net::new(6);
    let fallback = static_config(Ipv4Addr::new(10, 0, 0, 200));
    let client = net.stack(CLIENT_MAC, LinkFaults::default(), |b| {
        b.dhcp_with_fallback(DhcpConfig::default(), fallback, Duration::from_secs(10))
    });
    net.run_for(Duration::from_secs(9));
    assert!(client.addresses().is_empty(), "no fallback before its time");
    net.run_for(Duration::from_secs(2));
    assert_eq!(client.addresses(), [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200))]);
    assert!(client.dhcp().unwrap().fallback_active());
    // A server appears; the client, still selecting, gets a lease that
    // replaces the fallback.
    let control = ServerControl::new(3600);
    net.server(SERVER_A, control.clone());
    net.run_until(|| bound(&client));
    assert_eq!(client.addresses(), [IpAddr::V4(POOL[0])]);
    assert!(!client.dhcp().unwrap().fallback_active());
    // The DISCOVERs went out from 0.0.0.0 even with the fallback in place.
    let discover = control.seen(DhcpMessageType::Discover)[0];
    assert_eq!((discover.src, discover.dst), (IpAddr::V4(Ipv4Addr::UNSPECIFIED), Ipv4Addr::BROADCAST));
}

/// A client built the way the entry programs build theirs: the address
/// flags through `ipv4_or_dhcp`, the input loop through `spawn_input_loop`.
fn entry_client(net: &Net, address: Option<Ipv4Cidr>) -> Rc<TestStack> {
    let port = net.switch.add_port(CLIENT_MAC);
    let platform = VirtualPlatform::new(&net.sim, 77);
    let builder = StackBuilder::new(port, platform).ipv4_or_dhcp(address, Some(SERVER_A));
    let stack = Rc::new(net.sim.run_until(builder.build(), Duration::from_secs(1)).unwrap().unwrap());
    stack.spawn_input_loop("port0");
    stack
}

#[test]
fn wait_for_address_returns_the_lease_once_it_is_in_effect() {
    let net = Net::new(7);
    net.server(SERVER_A, ServerControl::new(3600));
    let client = entry_client(&net, None);
    assert!(client.dhcp().is_some(), "no --ipv4: DHCP");
    let started = net.clock.now();
    let config = net.sim.run_until(client.wait_for_address(Duration::from_secs(60)), LIMIT).unwrap().unwrap();
    assert_eq!(config.address, Ipv4Cidr::new(POOL[0], 24).unwrap());
    assert_eq!(config.gateway, Some(SERVER_A));
    assert!(bound(&client));
    // The conflict probe alone takes 4 s: the wait really waited.
    assert!(net.clock.now() >= started + Duration::from_secs(4), "returned at {}", net.clock.now());
}

#[test]
fn wait_for_address_gives_up_at_its_timeout_with_the_dhcp_state() {
    let net = Net::new(8);
    let client = entry_client(&net, None);
    let started = net.clock.now();
    let waited = Duration::from_secs(10);
    let error = net.sim.run_until(client.wait_for_address(waited), LIMIT).unwrap().unwrap_err();
    assert_eq!(error, AddressTimeout { waited, dhcp: Some(DhcpState::Selecting) });
    assert_eq!(error.to_string(), "no DHCP lease after 10s (state SELECTING)");
    let ended = net.clock.now();
    assert!(ended >= started + waited && ended <= started + waited + ADDRESS_POLL_INTERVAL, "ended at {ended}");
}

#[test]
fn wait_for_address_returns_a_static_address_at_once() {
    let net = Net::new(9);
    let address = Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 9), 24).unwrap();
    let client = entry_client(&net, Some(address));
    assert!(client.dhcp().is_none(), "--ipv4 given: no DHCP client");
    let started = net.clock.now();
    let config = net.sim.run_until(client.wait_for_address(Duration::from_secs(60)), LIMIT).unwrap().unwrap();
    assert_eq!((config.address, config.gateway), (address, Some(SERVER_A)));
    assert_eq!(net.clock.now(), started);
}
