//! [`FaultyNetwork`]: netem-style loss, delay, reordering and duplication
//! on our side of a network device, in both directions.
//!
//! Linux's `tc netem` is the usual way to make a link to the kernel's
//! stack lossy, but kernels built without `CONFIG_NET_SCH_NETEM` lack it.
//! Wrapping our stack's device gives the same faults without the kernel's
//! help, and applies them to frames we receive as well as to frames we
//! send, so both TCP peers see a lossy path.
//!
//! The model follows netem's (`tc-netem(8)`), one draw per frame from a
//! seeded generator, independently per direction:
//!
//! - `loss`: the frame is dropped;
//! - `reorder`: the frame skips `delay` and goes out at once, overtaking
//!   the frames still held back (as netem's `reorder` does: without a
//!   delay there is nothing to overtake);
//! - otherwise the frame is held for `delay`;
//! - `duplicate`: a second copy follows the first with the same delay.
//!
//! Each direction holds at most [`NetemFaults::limit`] frames; more are
//! dropped and counted as overflow, as netem's `limit` (default 1000).
//!
//! The generator is seeded, so the sequence of decisions is reproducible,
//! but which frame meets which decision depends on the peer's timing, so a
//! run over a real kernel does not replay exactly.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mirage_types::net::{MacAddress, NetStats, NetworkDevice, ETHERNET_HEADER_LEN};
use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Faults applied to every frame in each direction, with netem's meaning
/// (see the [module documentation](self)). Probabilities are in [0, 1];
/// values outside act as the nearest end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetemFaults {
    /// How long a frame that is not reordered is held.
    pub delay: Duration,
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame skips `delay`.
    pub reorder: f64,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Frames held per direction at most; beyond it frames are dropped.
    pub limit: usize,
}

impl NetemFaults {
    /// netem's `delay 20ms loss 5% reorder 25% duplicate 1%` (with its
    /// default `limit 1000`).
    pub const LOSSY_WAN: NetemFaults =
        NetemFaults { delay: Duration::from_millis(20), loss: 0.05, reorder: 0.25, duplicate: 0.01, limit: 1000 };
}

impl Default for NetemFaults {
    /// A perfect link: nothing lost, delayed, reordered or duplicated.
    fn default() -> NetemFaults {
        NetemFaults { delay: Duration::ZERO, loss: 0.0, reorder: 0.0, duplicate: 0.0, limit: 1000 }
    }
}

/// What the faults did to the frames of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    /// Frames offered to the faults (before any of them).
    pub offered: u64,
    /// Frames dropped by `loss`.
    pub lost: u64,
    /// Frames that skipped the delay.
    pub reordered: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Frames (or copies) dropped because `limit` frames were held.
    pub overflowed: u64,
    /// Frames passed on (to the stack, or to the wrapped device).
    pub delivered: u64,
    /// Frames the wrapped device refused to transmit (transmit direction
    /// only: the stack cannot see those errors, since its own transmit
    /// call returned long before).
    pub device_errors: u64,
}

/// What the faults did, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Frames from the wrapped device toward the stack.
    pub receive: DirectionCounts,
    /// Frames from the stack toward the wrapped device.
    pub transmit: DirectionCounts,
}

/// Frames held back in one direction, by (release time, arrival order).
#[derive(Debug, Default)]
struct DelayLine {
    frames: BTreeMap<(Instant, u64), Bytes>,
    next_seq: u64,
    counts: DirectionCounts,
}

impl DelayLine {
    /// Applies one set of draws to `frame`, offered at `now`.
    fn offer(&mut self, faults: &NetemFaults, rng: &mut XorShiftRng, now: Instant, frame: Bytes) {
        self.counts.offered += 1;
        if chance(rng, faults.loss) {
            self.counts.lost += 1;
            return;
        }
        let release = if chance(rng, faults.reorder) {
            self.counts.reordered += 1;
            now
        } else {
            now + faults.delay
        };
        let copies = if chance(rng, faults.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.frames.len() >= faults.limit {
                self.counts.overflowed += 1;
                continue;
            }
            self.frames.insert((release, self.next_seq), frame.clone());
            self.next_seq += 1;
        }
    }

    /// The first frame due at `now`, if any.
    fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        let entry = self.frames.first_entry().filter(|e| e.key().0 <= now)?;
        self.counts.delivered += 1;
        Some(entry.remove())
    }

    fn next_release(&self) -> Option<Instant> {
        self.frames.keys().next().map(|&(at, _)| at)
    }
}

/// Whether a draw falls under probability `p`.
fn chance(rng: &mut XorShiftRng, p: f64) -> bool {
    // 53 random bits: a uniform f64 in [0, 1).
    let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    draw < p
}

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug)]
struct Shared {
    faults: NetemFaults,
    rng: XorShiftRng,
    receive: DelayLine,
    transmit: DelayLine,
}

/// A network device that applies [`NetemFaults`] to the frames of the
/// device it wraps, in both directions. A test helper: put it between a
/// TAP device and our stack to make the path to the Linux kernel lossy.
///
/// It runs on tokio: [`FaultyNetwork::new`] spawns, with
/// [`tokio::task::spawn_local`], the task that releases transmitted frames
/// when their delay is over (the stack's transmit returns at once, as a
/// NIC's does when it queues a frame). That task ends when the
/// `FaultyNetwork` is dropped.
///
/// Memory is bounded by `2 × limit` frames of at most `mtu() + 14` bytes
/// each (held frames in the two directions).
#[derive(Debug)]
pub struct FaultyNetwork<N: NetworkDevice + 'static> {
    inner: Rc<N>,
    shared: Rc<RefCell<Shared>>,
    transmitted: Rc<Notify>,
    releaser: JoinHandle<()>,
}

impl<N: NetworkDevice + 'static> FaultyNetwork<N> {
    /// Wraps `inner`, drawing the faults from a generator seeded with
    /// `seed`.
    ///
    /// # Panics
    ///
    /// When called outside a tokio [`LocalSet`](tokio::task::LocalSet),
    /// which the transmit task needs.
    pub fn new(inner: N, faults: NetemFaults, seed: u64) -> FaultyNetwork<N> {
        let inner = Rc::new(inner);
        let shared = Rc::new(RefCell::new(Shared {
            faults,
            rng: XorShiftRng::seed_from_u64(seed),
            receive: DelayLine::default(),
            transmit: DelayLine::default(),
        }));
        let transmitted = Rc::new(Notify::new());
        let releaser =
            tokio::task::spawn_local(release_transmitted(inner.clone(), shared.clone(), transmitted.clone()));
        FaultyNetwork { inner, shared, transmitted, releaser }
    }

    /// What the faults have done so far.
    pub fn counts(&self) -> FaultCounts {
        let shared = self.shared.borrow();
        FaultCounts { receive: shared.receive.counts, transmit: shared.transmit.counts }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &N {
        &self.inner
    }
}

impl<N: NetworkDevice + 'static> Drop for FaultyNetwork<N> {
    fn drop(&mut self) {
        self.releaser.abort();
    }
}

/// Hands held transmitted frames to `inner` as they come due, for ever
/// (until aborted).
async fn release_transmitted<N: NetworkDevice + 'static>(
    inner: Rc<N>,
    shared: Rc<RefCell<Shared>>,
    transmitted: Rc<Notify>,
) {
    // Each pass sends one due frame or waits for the next one to come due
    // or be queued.
    loop {
        let due = shared.borrow_mut().transmit.pop_due(Instant::now());
        match due {
            Some(frame) => {
                if inner.transmit(frame.len(), |buf| buf.copy_from_slice(&frame)).await.is_err() {
                    shared.borrow_mut().transmit.counts.device_errors += 1;
                }
            }
            None => {
                let next = shared.borrow().transmit.next_release();
                tokio::select! {
                    () = transmitted.notified() => {}
                    () = sleep_until_or_forever(next) => {}
                }
            }
        }
    }
}

impl<N: NetworkDevice + 'static> NetworkDevice for FaultyNetwork<N> {
    type Error = N::Error;

    fn mac(&self) -> MacAddress {
        self.inner.mac()
    }

    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    /// The wrapped device's counters: frames that really crossed it.
    fn stats(&self) -> NetStats {
        self.inner.stats()
    }

    /// Waits for the next frame the faults let through and whose delay is
    /// over. Meanwhile it keeps receiving from the wrapped device, so the
    /// delay does not back up the device's own queue.
    ///
    /// Cancel-safe: frames received from the wrapped device are held in
    /// this device, not in the future.
    ///
    /// # Errors
    ///
    /// The wrapped device's receive errors, as it reports them.
    async fn receive(&self) -> Result<Bytes, N::Error> {
        // Each pass returns a due frame, or takes in one frame, or waits
        // for a held frame to come due.
        loop {
            let next = {
                let mut shared = self.shared.borrow_mut();
                if let Some(frame) = shared.receive.pop_due(Instant::now()) {
                    return Ok(frame);
                }
                shared.receive.next_release()
            };
            tokio::select! {
                frame = self.inner.receive() => {
                    let frame = frame?;
                    let mut guard = self.shared.borrow_mut();
                    let shared = &mut *guard;
                    shared.receive.offer(&shared.faults, &mut shared.rng, Instant::now(), frame);
                }
                () = sleep_until_or_forever(next) => {}
            }
        }
    }

    /// Takes the frame `fill` writes and holds it as the faults decide;
    /// `Ok` means it was taken, not that it was (or will be) sent: it may
    /// be lost, dropped as overflow, or refused later by the wrapped device
    /// (counted in [`DirectionCounts::device_errors`]). Never waits, so it
    /// is trivially cancel-safe.
    ///
    /// # Errors
    ///
    /// A frame longer than `mtu() + 14` goes straight to the wrapped
    /// device, which refuses it with its own error.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, N::Error> {
        if len > self.inner.mtu() + ETHERNET_HEADER_LEN {
            return self.inner.transmit(len, fill).await;
        }
        let mut frame = vec![0u8; len];
        let result = fill(&mut frame);
        {
            let mut guard = self.shared.borrow_mut();
            let shared = &mut *guard;
            shared.transmit.offer(&shared.faults, &mut shared.rng, Instant::now(), Bytes::from(frame));
        }
        self.transmitted.notify_one();
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::future::Future;

    use mirage_types::net::NetError;

    /// A device whose transmitted frames come back as received ones, so a
    /// frame crosses the faults twice (out, then in).
    #[derive(Debug, Default)]
    struct Loopback {
        queue: RefCell<VecDeque<Bytes>>,
        arrived: Notify,
    }

    impl NetworkDevice for Loopback {
        type Error = NetError;
        fn mac(&self) -> MacAddress {
            MacAddress([2, 0, 0, 0, 0, 1])
        }
        fn mtu(&self) -> usize {
            1500
        }
        fn stats(&self) -> NetStats {
            NetStats::default()
        }
        async fn receive(&self) -> Result<Bytes, NetError> {
            // Each pass takes a queued frame or waits for one.
            loop {
                if let Some(frame) = self.queue.borrow_mut().pop_front() {
                    return Ok(frame);
                }
                self.arrived.notified().await;
            }
        }
        async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
            if len > 1514 {
                return Err(NetError::FrameTooLarge { len, max: 1514 });
            }
            let mut frame = vec![0; len];
            let r = fill(&mut frame);
            self.queue.borrow_mut().push_back(frame.into());
            self.arrived.notify_one();
            Ok(r)
        }
    }

    /// Runs `body` on a paused clock (sleeps advance virtual time at once),
    /// in a `LocalSet`.
    fn virtual_time<F: Future<Output = ()>>(body: impl FnOnce() -> F) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, body());
    }

    /// Sends `count` frames numbered by their first four bytes, then
    /// collects what arrives until nothing has for `quiet` (virtual time).
    async fn send_and_collect(dev: &FaultyNetwork<Loopback>, count: u32, quiet: Duration) -> Vec<(u32, Instant)> {
        for i in 0..count {
            dev.transmit(60, |buf| buf[..4].copy_from_slice(&i.to_be_bytes())).await.unwrap();
        }
        let mut got = Vec::new();
        while let Ok(frame) = tokio::time::timeout(quiet, dev.receive()).await {
            let frame = frame.unwrap();
            got.push((u32::from_be_bytes(frame[..4].try_into().unwrap()), Instant::now()));
        }
        got
    }

    #[test]
    fn a_perfect_link_delivers_every_frame_in_order_at_once() {
        virtual_time(|| async {
            let dev = FaultyNetwork::new(Loopback::default(), NetemFaults::default(), 1);
            let start = Instant::now();
            let got = send_and_collect(&dev, 100, Duration::from_millis(1)).await;
            assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
            assert!(got.iter().all(|&(_, at)| at == start));
            let c = dev.counts();
            assert_eq!((c.transmit.delivered, c.receive.delivered), (100, 100));
        });
    }

    #[test]
    fn delay_applies_once_per_direction() {
        virtual_time(|| async {
            let faults = NetemFaults { delay: Duration::from_millis(20), ..NetemFaults::default() };
            let dev = FaultyNetwork::new(Loopback::default(), faults, 1);
            let start = Instant::now();
            let got = send_and_collect(&dev, 10, Duration::from_millis(100)).await;
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|&(_, at)| at - start == Duration::from_millis(40)), "{got:?}");
        });
    }

    #[test]
    fn loss_drops_about_its_share_in_each_direction() {
        virtual_time(|| async {
            // The burst is sent before any frame is released: hold it all.
            let faults = NetemFaults { loss: 0.05, limit: 10_000, ..NetemFaults::default() };
            let dev = FaultyNetwork::new(Loopback::default(), faults, 7);
            let got = send_and_collect(&dev, 4000, Duration::from_millis(1)).await;
            let c = dev.counts();
            assert_eq!(c.transmit.offered, 4000);
            assert_eq!(c.receive.offered, c.transmit.delivered);
            assert_eq!(got.len() as u64, c.receive.delivered);
            assert_eq!(c.transmit.offered - c.transmit.lost, c.transmit.delivered);
            // 5 % of 4000 is 200 (standard deviation about 14).
            for lost in [c.transmit.lost, c.receive.lost] {
                assert!((120..280).contains(&lost), "{c:?}");
            }
            // What survived kept its order: nothing reorders without `reorder`.
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        });
    }

    #[test]
    fn reordered_frames_overtake_held_ones_and_duplicates_arrive_twice() {
        virtual_time(|| async {
            let faults = NetemFaults {
                delay: Duration::from_millis(20),
                reorder: 0.25,
                duplicate: 0.01,
                limit: 10_000,
                ..NetemFaults::default()
            };
            let dev = FaultyNetwork::new(Loopback::default(), faults, 3);
            let got = send_and_collect(&dev, 2000, Duration::from_millis(100)).await;
            let c = dev.counts();
            assert!(c.transmit.reordered > 0 && c.receive.reordered > 0, "{c:?}");
            assert!(c.transmit.duplicated > 0, "{c:?}");
            // Nothing lost: every frame arrives, some twice.
            let mut numbers: Vec<u32> = got.iter().map(|g| g.0).collect();
            let inversions = numbers.windows(2).filter(|w| w[0] > w[1]).count();
            assert!(inversions > 0, "no frame overtook another");
            let extra = numbers.len() as u64 - 2000;
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(numbers, (0..2000).collect::<Vec<_>>());
            // A duplicate made on the way out is offered again on the way in.
            assert!(extra >= c.transmit.duplicated && extra > 0, "{extra} extra, {c:?}");
        });
    }

    #[test]
    fn the_limit_bounds_held_frames() {
        virtual_time(|| async {
            let faults = NetemFaults { delay: Duration::from_millis(20), limit: 50, ..NetemFaults::default() };
            let dev = FaultyNetwork::new(Loopback::default(), faults, 1);
            let got = send_and_collect(&dev, 80, Duration::from_millis(100)).await;
            assert_eq!(got.len(), 50);
            assert_eq!(dev.counts().transmit.overflowed, 30);
        });
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let run = |seed| {
            let mut out = None;
            virtual_time(|| async {
                let dev = FaultyNetwork::new(Loopback::default(), NetemFaults::LOSSY_WAN, seed);
                out = Some((send_and_collect(&dev, 500, Duration::from_millis(100)).await, dev.counts()));
            });
            out.unwrap()
        };
        let first = run(11);
        let numbers = |r: &(Vec<(u32, Instant)>, FaultCounts)| r.0.iter().map(|g| g.0).collect::<Vec<_>>();
        assert_eq!(numbers(&first), numbers(&run(11)));
        assert_eq!(first.1, run(11).1);
        assert_ne!(numbers(&first), numbers(&run(12)));
    }

    #[test]
    fn oversized_frames_are_refused_by_the_wrapped_device() {
        virtual_time(|| async {
            let dev = FaultyNetwork::new(Loopback::default(), NetemFaults::default(), 1);
            let e = dev.transmit(1515, |_| ()).await.unwrap_err();
            assert!(matches!(e, NetError::FrameTooLarge { len: 1515, max: 1514 }), "{e}");
            assert_eq!(dev.counts().transmit.offered, 0);
        });
    }
}
