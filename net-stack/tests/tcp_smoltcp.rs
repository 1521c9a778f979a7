//! TCP between our stack and smoltcp 0.12 on the virtual switch, in virtual
//! time: a peer written by other people, so both ends cannot share one
//! misreading of the RFCs.
//!
//! smoltcp runs on its own switch port through a small adapter (frames are
//! queued between the port and smoltcp's `phy::Device`), driven by a task
//! of the same [`Simulation`] as our stack: it polls the interface, runs the
//! test's socket logic, sends what smoltcp queued, then sleeps until a frame
//! arrives or smoltcp's next timer. Every test moves 1 MiB each way
//! byte-exact through an echo server, once with smoltcp as the client and
//! once with it as the server, on a clean link and under loss, reordering,
//! duplication and corruption.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{self, Either, FutureExt};
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack::switch::{LinkFaults, Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::tcp::TcpConfig;
use mirage_testkit::pattern;
use mirage_types::flow::{Flow, Shutdown};
use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::{MacAddress, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpListener};
use mirage_types::time::{Instant, MonotonicClock, Sleep};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

type OurStack = NetStack<SwitchPort, VirtualPlatform>;

const MAC_OURS: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xa]);
const MAC_SMOL: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xb]);
const IP_OURS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_SMOL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO_PORT: u16 = 7;
const SMOL_CLIENT_PORT: u16 = 49500;
/// smoltcp's socket buffers; 64 KiB makes it use window scaling.
const SMOL_BUFFER: usize = 64 * 1024;
const TRANSFER: usize = 1 << 20;

/// Frames between a switch port and smoltcp: received frames wait in `rx`
/// for `Interface::poll`, frames smoltcp emits wait in `tx` until the
/// driver sends them to the port.
#[derive(Default)]
struct FrameQueues {
    rx: VecDeque<Bytes>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Bytes);

struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for FrameQueues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // The switch's MTU (1500) plus the Ethernet header.
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn smol_now(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((now.as_nanos() / 1000) as i64)
}

/// smoltcp's interface with one TCP socket, on a switch port.
struct SmolHost {
    port: SwitchPort,
    clock: VirtualClock,
    queues: FrameQueues,
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
}

impl SmolHost {
    fn new(port: SwitchPort, clock: VirtualClock, seed: u64) -> SmolHost {
        let mut queues = FrameQueues::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(MAC_SMOL.0)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut queues, smol_now(clock.now()));
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(IP_SMOL), 24)).expect("one address fits");
        });
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SMOL_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SMOL_BUFFER]),
        );
        let mut sockets = SocketSet::new(vec![]);
        let handle = sockets.add(socket);
        SmolHost { port, clock, queues, iface, sockets, handle }
    }

    /// Runs smoltcp until `step` returns `Some`: each pass polls the
    /// interface, lets `step` act on the socket, sends what smoltcp
    /// queued, and sleeps until a frame arrives or smoltcp's next timer.
    /// The simulation's time limit bounds the passes.
    async fn drive<T>(&mut self, mut step: impl FnMut(&mut tcp::Socket<'static>) -> Option<T>) -> T {
        // Each pass handles one wake-up (a frame, a timer or progress of
        // `step`).
        loop {
            let now = smol_now(self.clock.now());
            self.iface.poll(now, &mut self.queues, &mut self.sockets);
            let done = step(self.sockets.get_mut::<tcp::Socket>(self.handle));
            // What `step` did (data sent, a close) goes out at once.
            self.iface.poll(now, &mut self.queues, &mut self.sockets);
            while let Some(frame) = self.queues.tx.pop_front() {
                self.port
                    .transmit(frame.len(), |buf| buf.copy_from_slice(&frame))
                    .await
                    .expect("smoltcp's frames fit the switch's MTU");
            }
            if let Some(done) = done {
                return done;
            }
            let delay = self.iface.poll_delay(now, &self.sockets);
            let frame = {
                let received = pin!(self.port.receive());
                let timer = pin!(async {
                    match delay {
                        Some(d) => {
                            let at = self.clock.now() + Duration::from_micros(d.total_micros());
                            self.clock.sleep_until(at).await
                        }
                        None => future::pending().await,
                    }
                });
                match future::select(received, timer).await {
                    Either::Left((frame, _)) => Some(frame.expect("a switch port never fails")),
                    Either::Right(_) => None,
                }
            };
            self.queues.rx.extend(frame);
            // Frames due at the same instant are taken together; the
            // port's inbox bounds them.
            while let Some(Ok(frame)) = self.port.receive().now_or_never() {
                self.queues.rx.push_back(frame);
            }
        }
    }
}

struct Net {
    sim: Simulation,
    clock: VirtualClock,
    ours: Rc<OurStack>,
    smol: SmolHost,
}

/// Our stack and smoltcp on one switch whose links both have `faults`.
fn net(seed: u64, faults: LinkFaults) -> Net {
    let clock = VirtualClock::new();
    let sim = Simulation::new(&clock);
    let switch = VirtualSwitch::new(&clock, seed);
    let (p_ours, p_smol) = (switch.add_port(MAC_OURS), switch.add_port(MAC_SMOL));
    switch.set_faults(&p_ours, faults);
    switch.set_faults(&p_smol, faults);
    let platform = VirtualPlatform::new(&sim, seed + 1);
    let tcp =
        TcpConfig { user_timeout: Duration::from_secs(3600), max_rto: Duration::from_secs(4), ..TcpConfig::default() };
    let ours = sim
        .run_until(
            async {
                let ip = Ipv4Config { address: Ipv4Cidr::new(IP_OURS, 24).unwrap(), gateway: None };
                StackBuilder::new(p_ours, platform).ipv4(ip).tcp_config(tcp).build().await.unwrap()
            },
            Duration::from_secs(1),
        )
        .unwrap();
    let ours = Rc::new(ours);
    let runner = ours.clone();
    sim.spawn(async move {
        runner.run().await.expect("the virtual link never fails");
    });
    let smol = SmolHost::new(p_smol, clock.clone(), seed + 2);
    Net { sim, clock, ours, smol }
}

/// Loss as given, with the reordering, duplication and corruption of the
/// virtual-switch TCP tests.
fn faults(loss: f64) -> LinkFaults {
    LinkFaults {
        loss,
        duplicate: 0.01,
        reorder: 0.02,
        reorder_delay: Duration::from_millis(3),
        corrupt: 0.01,
        delay: Duration::from_millis(1),
        jitter: Duration::from_micros(300),
    }
}

/// Our echo server on port 7: echoes each connection until end of stream,
/// then closes it.
fn serve_echo(n: &Net) {
    let (ours, sim) = (n.ours.clone(), n.sim.clone());
    n.sim.spawn(async move {
        let listener = ours.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT)), 4).await.unwrap();
        // Each pass serves one connection; the server runs as long as the
        // test does.
        loop {
            let mut flow = listener.accept().await.expect("accept never fails");
            sim.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                // Each pass echoes one read; it ends at end of stream.
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
            });
        }
    });
}

/// smoltcp connects to our echo server, sends `data` then its FIN while
/// reading the echo, and returns what it read once our FIN came.
fn smoltcp_client_to_our_echo(seed: u64, loss: f64, limit: Duration) {
    let n = net(seed, faults(loss));
    serve_echo(&n);
    let data = pattern(seed, TRANSFER);
    let Net { sim, clock, ours, mut smol } = n;
    let echoed = sim
        .run_until(
            async {
                let socket = smol.sockets.get_mut::<tcp::Socket>(smol.handle);
                socket
                    .connect(smol.iface.context(), (IpAddress::Ipv4(IP_OURS), ECHO_PORT), SMOL_CLIENT_PORT)
                    .expect("a fresh socket connects");
                let (mut sent, mut got) = (0, Vec::with_capacity(data.len()));
                let mut buf = vec![0u8; 16 * 1024];
                smol.drive(|socket| {
                    if socket.can_send() && sent < data.len() {
                        sent += socket.send_slice(&data[sent..]).expect("can_send");
                    }
                    if sent == data.len() && socket.may_send() {
                        socket.close();
                    }
                    while socket.can_recv() {
                        let k = socket.recv_slice(&mut buf).expect("can_recv");
                        got.extend_from_slice(&buf[..k]);
                    }
                    // Our FIN came after every echoed byte (or a reset
                    // ended it early, which the length check reports).
                    (!socket.may_recv() && socket.state() != tcp::State::SynSent).then(|| std::mem::take(&mut got))
                })
                .await
            },
            limit,
        )
        .unwrap_or_else(|e| panic!("seed {seed}, loss {loss}: {e}"));
    assert_eq!(echoed.len(), data.len(), "seed {seed}, loss {loss}");
    assert!(echoed == data, "seed {seed}, loss {loss}: the echo differs from what smoltcp sent");
    assert_our_connection_ends(&sim, &clock, &ours, &mut smol);
}

/// Runs smoltcp (which answers our FIN, or retransmits its own) until
/// our side has no connection left.
fn assert_our_connection_ends(sim: &Simulation, clock: &VirtualClock, ours: &OurStack, smol: &mut SmolHost) {
    let deadline = clock.now() + Duration::from_secs(120);
    let gone = sim
        .run_until(
            smol.drive(|_| (ours.usage().tcp_connections == 0 || clock.now() >= deadline).then_some(())),
            Duration::from_secs(180),
        )
        .map(|()| ours.usage());
    let u = gone.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.tcp_connections, 0, "our stack still holds a connection 120 s after the transfer: {u:?}");
}

/// Our client sends `data` to smoltcp's echo server (and its FIN) while
/// reading the echo until end of stream.
fn our_client_to_smoltcp_echo(seed: u64, loss: f64, limit: Duration) {
    let n = net(seed, faults(loss));
    let data = pattern(seed, TRANSFER);
    let Net { sim, clock: _, ours, mut smol } = n;
    smol.sockets.get_mut::<tcp::Socket>(smol.handle).listen(ECHO_PORT).expect("a fresh socket listens");
    // smoltcp's echo server: what it reads waits in `pending` until its
    // send buffer takes it; after the client's FIN and the last byte, it
    // closes.
    sim.spawn(async move {
        let mut pending: VecDeque<u8> = VecDeque::new();
        let mut buf = vec![0u8; 16 * 1024];
        smol.drive(|socket| {
            while socket.can_recv() && pending.len() < SMOL_BUFFER {
                let k = socket.recv_slice(&mut buf).expect("can_recv");
                pending.extend(&buf[..k]);
            }
            while socket.can_send() && !pending.is_empty() {
                let (a, _) = pending.as_slices();
                let k = socket.send_slice(a).expect("can_send");
                pending.drain(..k);
            }
            if pending.is_empty() && !socket.may_recv() && socket.may_send() && socket.is_active() {
                socket.close();
            }
            // The server runs as long as the test does.
            None::<()>
        })
        .await;
    });
    let echoed = sim
        .run_until(
            async {
                let mut flow = ours.tcp().connect(SocketAddr::from((IP_SMOL, ECHO_PORT))).await.unwrap();
                let echoed = duplex(&mut flow, &data).await.unwrap();
                flow.close().await.unwrap();
                echoed
            },
            limit,
        )
        .unwrap_or_else(|e| panic!("seed {seed}, loss {loss}: {e}"));
    assert_eq!(echoed.len(), data.len(), "seed {seed}, loss {loss}");
    assert!(echoed == data, "seed {seed}, loss {loss}: smoltcp's echo differs from what we sent");
}

/// Writes `data` then shuts the write side, while reading until end of
/// stream, on one flow (write and read are cancel-safe, so each poll tries
/// both afresh). Returns what was read.
async fn duplex<F: Flow>(flow: &mut F, data: &[u8]) -> Result<Vec<u8>, F::Error> {
    let (mut sent, mut shut) = (0, false);
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    future::poll_fn(|cx| {
        // Each pass makes progress in at least one direction or returns;
        // there are at most data.len() bytes to move each way.
        loop {
            let mut progress = false;
            if sent < data.len() {
                if let Poll::Ready(r) = pin!(flow.write(&data[sent..])).poll(cx) {
                    sent += r?;
                    progress = true;
                }
            } else if !shut {
                if let Poll::Ready(r) = pin!(flow.shutdown(Shutdown::Write)).poll(cx) {
                    r?;
                    shut = true;
                    progress = true;
                }
            }
            let read = pin!(flow.read(&mut buf)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(std::mem::take(&mut got))),
                Poll::Ready(Ok(n)) => {
                    got.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await
}

#[test]
fn smoltcp_client_echoes_1_mib_through_our_server() {
    smoltcp_client_to_our_echo(1, 0.0, Duration::from_secs(120));
}

#[test]
fn our_client_echoes_1_mib_through_smoltcp_server() {
    our_client_to_smoltcp_echo(2, 0.0, Duration::from_secs(120));
}

#[test]
fn smoltcp_client_echoes_1_mib_through_our_server_under_loss() {
    for seed in [3, 4] {
        smoltcp_client_to_our_echo(seed, 0.03, Duration::from_secs(1800));
    }
}

#[test]
fn our_client_echoes_1_mib_through_smoltcp_server_under_loss() {
    for seed in [5, 6] {
        our_client_to_smoltcp_echo(seed, 0.03, Duration::from_secs(1800));
    }
}
