//! An in-memory virtual switch driven by virtual time, for deterministic
//! tests of anything that talks over a [`NetworkDevice`].
//!
//! Enabled by the `test-utils` feature. The switch runs on
//! `mirage-testkit`'s virtual time, re-exported here so tests take
//! everything from one place:
//!
//! - [`VirtualClock`]: a [`MonotonicClock`] + [`Sleep`] whose time moves only
//!   when told to ([`VirtualClock::advance_to`]).
//! - [`Simulation`]: a single-threaded executor that polls its tasks and,
//!   when every task is idle, advances the clock to the next pending
//!   deadline. A test that waits 60 virtual seconds takes microseconds.
//! - [`VirtualSwitch`]: ports ([`SwitchPort`]) that implement
//!   [`NetworkDevice`], joined by a learning switch (or a hub), with seeded
//!   fault injection on each link ([`LinkFaults`]: loss, duplication,
//!   reordering, bit flips, delay and jitter).
//! - [`VirtualPlatform`]: the clock plus a [`SeededRandom`] plus spawning on
//!   the simulation, as one handle implementing
//!   [`Platform`](mirage_types::platform::Platform), to give to code that
//!   takes a platform.
//!
//! Everything is deterministic: the same seed and the same test give the
//! same frames at the same virtual instants, so a failure replays exactly.
//!
//! ```
//! use core::time::Duration;
//! use mirage_net_stack::switch::{LinkFaults, Simulation, VirtualClock, VirtualSwitch};
//! use mirage_types::net::{MacAddress, NetworkDevice};
//!
//! let clock = VirtualClock::new();
//! let switch = VirtualSwitch::new(&clock, 7);
//! let a = switch.add_port(MacAddress([2, 0, 0, 0, 0, 1]));
//! let b = switch.add_port(MacAddress([2, 0, 0, 0, 0, 2]));
//! // Frames toward `b` take 5 ms.
//! switch.set_faults(&b, LinkFaults { delay: Duration::from_millis(5), ..LinkFaults::default() });
//! let sim = Simulation::new(&clock);
//! let frame = sim
//!     .run_until(
//!         async {
//!             a.transmit(60, |buf| {
//!                 buf.fill(0);
//!                 buf[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
//!             })
//!             .await
//!             .unwrap();
//!             b.receive().await.unwrap()
//!         },
//!         Duration::from_secs(1),
//!     )
//!     .unwrap();
//! assert_eq!(frame.len(), 60);
//! assert_eq!(clock.now().as_nanos(), 5_000_000);
//! # use mirage_types::time::MonotonicClock;
//! ```

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::task::{Poll, Waker};
use core::time::Duration;

use bytes::Bytes;
use futures::future::{self, Either};
use mirage_types::net::{MacAddress, NetError, NetStats, NetworkDevice, ETHERNET_HEADER_LEN};
use mirage_types::time::{Instant, MonotonicClock, Sleep};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;

pub use mirage_testkit::{SeededRandom, Simulation, SimulationError, VirtualClock, VirtualPlatform};

// ---------------------------------------------------------------------------
// Fault injection

/// The dice of the fault injector: SplitMix64 (small, fast, and good enough
/// to drive fault injection and test identifiers; not a cryptographic
/// generator) with the draws the faults need.
#[derive(Clone, Debug)]
struct FaultDice(SplitMix64);

impl FaultDice {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (clamped to [0, 1]); draws nothing when
    /// `p` is zero, so enabling one fault does not shift the others' draws.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

// ---------------------------------------------------------------------------
// The switch

/// Faults injected on one link, in the switch-to-port direction: a frame
/// from port A to port B suffers B's faults. Probabilities are per frame,
/// in [0, 1] (values outside are clamped by the comparison).
///
/// `Default` is a perfect link: nothing lost, no delay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by `reorder_delay`, so frames
    /// sent after it overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered frame.
    pub reorder_delay: Duration,
    /// Probability that one random bit of a frame is flipped.
    pub corrupt: f64,
    /// Latency of every frame.
    pub delay: Duration,
    /// Extra latency, uniform in [0, jitter), drawn per frame. Jitter alone
    /// can reorder frames sent close together.
    pub jitter: Duration,
}

/// How the switch picks the ports a frame goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SwitchMode {
    /// A learning bridge (IEEE 802.1D without spanning tree): it learns
    /// which port each unicast source address is behind and sends unicast
    /// frames only there; unknown destinations, broadcast and multicast go
    /// to every other port. The table holds at most
    /// [`VirtualSwitch::MAC_TABLE_CAPACITY`] addresses; beyond that it stops
    /// learning and floods.
    #[default]
    Learning,
    /// A hub: every frame goes to every other port.
    Hub,
}

/// How to attach a port to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's MAC address, reported by [`NetworkDevice::mac`]. The
    /// switch does not filter on it: like a NIC in a bridge, the port
    /// receives what the switch forwards to it, and upper layers filter.
    pub mac: MacAddress,
    /// Largest Ethernet payload the port sends.
    pub mtu: usize,
    /// Frames waiting to be received; beyond it, frames are dropped and
    /// counted in [`NetStats::rx_dropped`].
    pub queue_len: usize,
    /// Receive a copy of every frame the switch forwards (a mirror port), as
    /// a capture point for tests.
    pub mirror: bool,
}

impl PortConfig {
    /// A port with MTU 1500, a 1024-frame receive queue, not a mirror.
    pub fn new(mac: MacAddress) -> PortConfig {
        PortConfig { mac, mtu: 1500, queue_len: 1024, mirror: false }
    }
}

/// Counters of what the switch did to frames, over all links.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames sent by ports.
    pub frames_in: u64,
    /// Frames queued to a port (a flooded frame counts once per port).
    pub delivered: u64,
    /// Deliveries dropped by injected loss.
    pub lost: u64,
    /// Extra copies made by injected duplication.
    pub duplicated: u64,
    /// Deliveries held back by injected reordering.
    pub reordered: u64,
    /// Deliveries with a bit flipped.
    pub corrupted: u64,
    /// Deliveries dropped because the port's queue was full.
    pub queue_full: u64,
}

/// An in-memory Ethernet switch. Clones share the same switch.
///
/// See the [module documentation](self) for an example.
#[derive(Clone)]
pub struct VirtualSwitch {
    state: Rc<RefCell<SwitchState>>,
    clock: VirtualClock,
}

struct SwitchState {
    mode: SwitchMode,
    ports: Vec<PortState>,
    mac_table: BTreeMap<MacAddress, usize>,
    rng: FaultDice,
    stats: SwitchStats,
    /// Orders deliveries at the same instant by arrival.
    next_seq: u64,
}

struct PortState {
    config: PortConfig,
    faults: LinkFaults,
    /// Frames by (delivery time, sequence).
    inbox: BTreeMap<(Instant, u64), Bytes>,
    /// Bumped on every change to the inbox, to wake the receiver.
    generation: u64,
    receiver: Option<Waker>,
    stats: NetStats,
    attached: bool,
}

impl VirtualSwitch {
    /// Addresses the learning table holds at most.
    pub const MAC_TABLE_CAPACITY: usize = 1024;

    /// A learning switch on `clock` whose fault injection is seeded with
    /// `seed`.
    pub fn new(clock: &VirtualClock, seed: u64) -> VirtualSwitch {
        VirtualSwitch::with_mode(clock, seed, SwitchMode::Learning)
    }

    /// A switch with the given forwarding mode.
    pub fn with_mode(clock: &VirtualClock, seed: u64, mode: SwitchMode) -> VirtualSwitch {
        let state = SwitchState {
            mode,
            ports: Vec::new(),
            mac_table: BTreeMap::new(),
            rng: FaultDice(SplitMix64::seed_from_u64(seed)),
            stats: SwitchStats::default(),
            next_seq: 0,
        };
        VirtualSwitch { state: Rc::new(RefCell::new(state)), clock: clock.clone() }
    }

    /// Attaches a port with the default [`PortConfig`] for `mac`.
    pub fn add_port(&self, mac: MacAddress) -> SwitchPort {
        self.add_port_with(PortConfig::new(mac))
    }

    /// Attaches a port. Dropping the [`SwitchPort`] detaches it.
    pub fn add_port_with(&self, config: PortConfig) -> SwitchPort {
        let mut state = self.state.borrow_mut();
        state.ports.push(PortState {
            config,
            faults: LinkFaults::default(),
            inbox: BTreeMap::new(),
            generation: 0,
            receiver: None,
            stats: NetStats::default(),
            attached: true,
        });
        SwitchPort { switch: self.clone(), index: state.ports.len() - 1 }
    }

    /// Sets the faults of the link toward `port` (see [`LinkFaults`]).
    pub fn set_faults(&self, port: &SwitchPort, faults: LinkFaults) {
        self.state.borrow_mut().ports[port.index].faults = faults;
    }

    /// Sets the same faults on every link.
    pub fn set_all_faults(&self, faults: LinkFaults) {
        for port in &mut self.state.borrow_mut().ports {
            port.faults = faults;
        }
    }

    /// What the switch did so far.
    pub fn stats(&self) -> SwitchStats {
        self.state.borrow().stats
    }

    /// Takes `frame` from port `from` and queues it to the ports it goes to.
    fn forward(&self, from: usize, frame: Bytes) {
        let now = self.clock.now();
        let mut wake = Vec::new();
        {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            state.stats.frames_in += 1;
            let dst = frame.get(0..6).map(|b| MacAddress([b[0], b[1], b[2], b[3], b[4], b[5]]));
            let src = frame.get(6..12).map(|b| MacAddress([b[0], b[1], b[2], b[3], b[4], b[5]]));
            if let (SwitchMode::Learning, Some(src)) = (state.mode, src) {
                if src.is_unicast()
                    && (state.mac_table.contains_key(&src) || state.mac_table.len() < Self::MAC_TABLE_CAPACITY)
                {
                    state.mac_table.insert(src, from);
                }
            }
            let known = match (state.mode, dst) {
                (SwitchMode::Learning, Some(dst)) if dst.is_unicast() => state.mac_table.get(&dst).copied(),
                _ => None,
            };
            for to in 0..state.ports.len() {
                let port = &state.ports[to];
                if to == from || !port.attached {
                    continue;
                }
                if !(port.config.mirror || known.is_none() || known == Some(to)) {
                    continue;
                }
                if state.deliver(now, to, frame.clone()) {
                    if let Some(w) = state.ports[to].receiver.take() {
                        wake.push(w);
                    }
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }
}

impl SwitchState {
    /// Applies the link faults of port `to` and queues the frame; returns
    /// whether anything was queued.
    fn deliver(&mut self, now: Instant, to: usize, mut frame: Bytes) -> bool {
        let faults = self.ports[to].faults;
        if self.rng.chance(faults.loss) {
            self.stats.lost += 1;
            return false;
        }
        if self.rng.chance(faults.corrupt) && !frame.is_empty() {
            let bit = self.rng.next_u64() % (frame.len() as u64 * 8);
            let mut copy = frame.to_vec();
            copy[(bit / 8) as usize] ^= 1 << (bit % 8);
            frame = Bytes::from(copy);
            self.stats.corrupted += 1;
        }
        let mut at = now + faults.delay;
        if faults.jitter > Duration::ZERO {
            at += faults.jitter.mul_f64(self.rng.next_f64());
        }
        if self.rng.chance(faults.reorder) {
            at += faults.reorder_delay;
            self.stats.reordered += 1;
        }
        let copies = if self.rng.chance(faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let mut queued = false;
        for _ in 0..copies {
            let port = &mut self.ports[to];
            if port.inbox.len() >= port.config.queue_len {
                port.stats.rx_dropped += 1;
                self.stats.queue_full += 1;
                continue;
            }
            port.inbox.insert((at, self.next_seq), frame.clone());
            port.generation += 1;
            self.next_seq += 1;
            self.stats.delivered += 1;
            queued = true;
        }
        queued
    }
}

impl fmt::Debug for VirtualSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("VirtualSwitch")
            .field("mode", &state.mode)
            .field("ports", &state.ports.len())
            .field("stats", &state.stats)
            .finish()
    }
}

/// One port of a [`VirtualSwitch`]: a [`NetworkDevice`]. Dropping it
/// detaches the port (frames toward it are no longer queued).
pub struct SwitchPort {
    switch: VirtualSwitch,
    index: usize,
}

/// What the receive side found in the inbox.
enum Inbox {
    Frame(Bytes),
    /// The first frame is due at this instant.
    Later(Instant),
    Empty,
}

impl SwitchPort {
    /// The switch this port is attached to.
    pub fn switch(&self) -> &VirtualSwitch {
        &self.switch
    }

    /// Frames queued for this port, due or not.
    pub fn queued(&self) -> usize {
        self.switch.state.borrow().ports[self.index].inbox.len()
    }

    fn take_due(&self) -> Inbox {
        let now = self.switch.clock.now();
        let mut state = self.switch.state.borrow_mut();
        let port = &mut state.ports[self.index];
        let Some(mut first) = port.inbox.first_entry() else {
            return Inbox::Empty;
        };
        if first.key().0 > now {
            return Inbox::Later(first.key().0);
        }
        let frame = core::mem::take(first.get_mut());
        first.remove();
        port.generation += 1;
        port.stats.rx_frames += 1;
        port.stats.rx_bytes += frame.len() as u64;
        Inbox::Frame(frame)
    }

    /// Completes when the inbox changed since `generation` was read.
    fn inbox_changed(&self, generation: u64) -> impl Future<Output = ()> + '_ {
        future::poll_fn(move |cx| {
            let mut state = self.switch.state.borrow_mut();
            let port = &mut state.ports[self.index];
            if port.generation != generation {
                Poll::Ready(())
            } else {
                port.receiver = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

impl fmt::Debug for SwitchPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.switch.state.borrow();
        let port = &state.ports[self.index];
        f.debug_struct("SwitchPort").field("index", &self.index).field("mac", &port.config.mac).finish()
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        if let Ok(mut state) = self.switch.state.try_borrow_mut() {
            let port = &mut state.ports[self.index];
            port.attached = false;
            port.inbox.clear();
        }
    }
}

impl NetworkDevice for SwitchPort {
    type Error = NetError;

    fn mac(&self) -> MacAddress {
        self.switch.state.borrow().ports[self.index].config.mac
    }

    fn mtu(&self) -> usize {
        self.switch.state.borrow().ports[self.index].config.mtu
    }

    fn stats(&self) -> NetStats {
        self.switch.state.borrow().ports[self.index].stats
    }

    /// Waits for the next frame whose delivery time has come. One task
    /// should receive on a port: a second concurrent receiver replaces the
    /// first one's wake-up registration. Cancel-safe.
    async fn receive(&self) -> Result<Bytes, NetError> {
        // Each pass either returns or waits for a change or a deadline; the
        // loop ends as soon as a due frame exists.
        loop {
            let generation = self.switch.state.borrow().ports[self.index].generation;
            match self.take_due() {
                Inbox::Frame(frame) => return Ok(frame),
                Inbox::Later(at) => {
                    let changed = core::pin::pin!(self.inbox_changed(generation));
                    let due = core::pin::pin!(self.switch.clock.sleep_until(at));
                    match future::select(changed, due).await {
                        Either::Left(_) | Either::Right(_) => {}
                    }
                }
                Inbox::Empty => self.inbox_changed(generation).await,
            }
        }
    }

    /// Copies the frame into the switch, which queues it to its
    /// destinations at once (delivery time is set by link faults). Never
    /// waits. Fails with [`NetError::FrameTooLarge`] above MTU + header.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        let max = self.mtu() + ETHERNET_HEADER_LEN;
        if len > max {
            self.switch.state.borrow_mut().ports[self.index].stats.tx_dropped += 1;
            return Err(NetError::FrameTooLarge { len, max });
        }
        let mut frame = vec![0u8; len];
        let r = fill(&mut frame);
        {
            let mut state = self.switch.state.borrow_mut();
            let stats = &mut state.ports[self.index].stats;
            stats.tx_frames += 1;
            stats.tx_bytes += len as u64;
        }
        self.switch.forward(self.index, Bytes::from(frame));
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const B: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
    const C: MacAddress = MacAddress([2, 0, 0, 0, 0, 3]);

    fn frame_to(dst: MacAddress, src: MacAddress, tag: u8) -> impl FnOnce(&mut [u8]) {
        move |buf: &mut [u8]| {
            buf.fill(tag);
            buf[0..6].copy_from_slice(&dst.0);
            buf[6..12].copy_from_slice(&src.0);
        }
    }

    #[test]
    fn learning_switch_sends_known_unicast_to_one_port() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let (a, b, c) = (switch.add_port(A), switch.add_port(B), switch.add_port(C));
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                // B is unknown: flooded to B and C. Then B answers, so the
                // switch learns B and the next frame reaches B only.
                a.transmit(60, frame_to(B, A, 1)).await.unwrap();
                b.transmit(60, frame_to(A, B, 2)).await.unwrap();
                a.transmit(60, frame_to(B, A, 3)).await.unwrap();
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(b.queued(), 2);
        assert_eq!(c.queued(), 1, "only the frame to an unknown address is flooded");
        assert_eq!(a.queued(), 1, "A was learned from its first frame");
    }

    #[test]
    fn hub_floods_and_mirror_sees_everything() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::with_mode(&clock, 1, SwitchMode::Hub);
        let a = switch.add_port(A);
        let b = switch.add_port(B);
        let c = switch.add_port(C);
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                a.transmit(60, frame_to(B, A, 1)).await.unwrap();
                b.transmit(60, frame_to(A, B, 1)).await.unwrap();
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.queued(), 2);

        let learning = VirtualSwitch::new(&clock, 1);
        let a = learning.add_port(A);
        let b = learning.add_port(B);
        let mirror = learning.add_port_with(PortConfig { mirror: true, ..PortConfig::new(C) });
        sim.run_until(
            async {
                a.transmit(60, frame_to(B, A, 1)).await.unwrap();
                b.transmit(60, frame_to(A, B, 1)).await.unwrap();
                a.transmit(60, frame_to(B, A, 1)).await.unwrap();
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(mirror.queued(), 3);
    }

    #[test]
    fn oversized_frame_is_refused() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let a = switch.add_port(A);
        let sim = Simulation::new(&clock);
        let e = sim.run_until(a.transmit(1515, |_| ()), Duration::from_secs(1)).unwrap().unwrap_err();
        assert_eq!(e, NetError::FrameTooLarge { len: 1515, max: 1514 });
        assert_eq!(a.stats().tx_dropped, 1);
    }

    /// Sends `n` numbered frames from a to b and returns the numbers b got,
    /// in order, plus the switch's counters.
    fn send_numbered(faults: LinkFaults, n: u16, seed: u64) -> (Vec<u16>, SwitchStats) {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, seed);
        let a = switch.add_port(A);
        let b = switch.add_port_with(PortConfig { queue_len: 4096, ..PortConfig::new(B) });
        switch.set_faults(&b, faults);
        let sim = Simulation::new(&clock);
        let got = sim
            .run_until(
                async {
                    for i in 0..n {
                        a.transmit(64, |buf| {
                            buf.fill(0);
                            buf[0..6].copy_from_slice(&B.0);
                            buf[14..16].copy_from_slice(&i.to_be_bytes());
                        })
                        .await
                        .unwrap();
                        clock.sleep(Duration::from_millis(1)).await;
                    }
                    // Let every delayed frame arrive.
                    clock.sleep(Duration::from_secs(10)).await;
                    let mut got = Vec::new();
                    while b.queued() > 0 {
                        let f = b.receive().await.unwrap();
                        got.push(u16::from_be_bytes([f[14], f[15]]));
                    }
                    got
                },
                Duration::from_secs(60),
            )
            .unwrap();
        (got, switch.stats())
    }

    #[test]
    fn loss_drops_about_the_asked_fraction() {
        let (got, stats) = send_numbered(LinkFaults { loss: 0.1, ..LinkFaults::default() }, 2000, 42);
        assert_eq!(got.len() as u64 + stats.lost, 2000);
        assert!((140..=260).contains(&stats.lost), "lost {}", stats.lost);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "loss alone keeps order");
    }

    #[test]
    fn duplication_reordering_and_corruption_happen_and_are_counted() {
        let faults = LinkFaults {
            duplicate: 0.1,
            reorder: 0.1,
            reorder_delay: Duration::from_millis(5),
            corrupt: 0.1,
            ..LinkFaults::default()
        };
        let (got, stats) = send_numbered(faults, 1000, 7);
        assert_eq!(got.len() as u64, 1000 + stats.duplicated);
        assert!(stats.duplicated > 50 && stats.reordered > 50 && stats.corrupted > 50, "{stats:?}");
        assert!(got.windows(2).any(|w| w[0] > w[1]), "some frame was overtaken");
    }

    #[test]
    fn same_seed_replays_the_same_run() {
        let faults = LinkFaults { loss: 0.3, jitter: Duration::from_millis(3), ..LinkFaults::default() };
        assert_eq!(send_numbered(faults, 300, 9), send_numbered(faults, 300, 9));
        assert_ne!(send_numbered(faults, 300, 9).0, send_numbered(faults, 300, 10).0);
    }

    #[test]
    fn delay_holds_frames_until_due() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let a = switch.add_port(A);
        let b = switch.add_port(B);
        switch.set_faults(&b, LinkFaults { delay: Duration::from_millis(20), ..LinkFaults::default() });
        let sim = Simulation::new(&clock);
        let at = sim
            .run_until(
                async {
                    a.transmit(60, frame_to(B, A, 0)).await.unwrap();
                    b.receive().await.unwrap();
                    clock.now()
                },
                Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(at, Instant::from_millis(20));
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let a = switch.add_port(A);
        let b = switch.add_port_with(PortConfig { queue_len: 4, ..PortConfig::new(B) });
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                for i in 0..10 {
                    a.transmit(60, frame_to(B, A, i)).await.unwrap();
                }
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(b.queued(), 4);
        assert_eq!(b.stats().rx_dropped, 6);
    }
}
