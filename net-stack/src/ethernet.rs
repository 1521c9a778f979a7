//! The Ethernet layer over any [`NetworkDevice`].
//!
//! Reading list:
//! - IEEE 802.3 §3.2 and RFC 894: Ethernet II framing of IPv4.
//! - IEEE 802.1Q: VLAN tags (not handled: tagged frames are dropped).
//! - RFC 1112 §6.4: mapping IPv4 multicast groups to MAC addresses.
//!
//! [`EthernetLayer::receive`] keeps only frames addressed to us: our
//! unicast address, broadcast, and the multicast groups joined with
//! [`EthernetLayer::join_multicast`] (at most
//! [`EthernetLayer::MAX_MULTICAST_GROUPS`]). Everything else is counted in
//! [`EthernetStats`] and dropped.

use alloc::collections::BTreeSet;
use alloc::string::ToString;
use core::cell::{Cell, RefCell};
use core::net::Ipv4Addr;

use mirage_types::ethernet::{EtherType, Ethernet, EthernetError, EthernetFrame};
use mirage_types::net::{MacAddress, NetworkDevice, ETHERNET_HEADER_LEN};

use crate::wire::{EthernetPacket, EthernetRepr};

/// Shortest Ethernet frame without its frame check sequence (IEEE 802.3
/// §4.2.3.3: 64 bytes with the FCS). Shorter frames are padded with zeros.
pub const MIN_FRAME_LEN: usize = 60;

/// The multicast MAC address of an IPv4 group (RFC 1112 §6.4): 01:00:5e
/// followed by the low 23 bits of the group address.
pub fn ipv4_multicast_mac(group: Ipv4Addr) -> MacAddress {
    let o = group.octets();
    MacAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// Counters of frames the layer received and what it did with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EthernetStats {
    /// Frames returned by [`Ethernet::receive`].
    pub received: u64,
    /// Frames dropped because their destination was not ours.
    pub not_for_us: u64,
    /// Frames dropped because they carried an 802.1Q VLAN tag.
    pub vlan_dropped: u64,
    /// Frames dropped because they were too short or used 802.3 length
    /// framing.
    pub malformed: u64,
    /// Frames sent.
    pub sent: u64,
}

/// The Ethernet layer: filters received frames by destination and writes
/// headers on the way out.
#[derive(Debug)]
pub struct EthernetLayer<N> {
    device: N,
    groups: RefCell<BTreeSet<MacAddress>>,
    stats: Cell<EthernetStats>,
}

/// [`EthernetLayer::join_multicast`] refused a group: the bound
/// [`EthernetLayer::MAX_MULTICAST_GROUPS`] was reached, or the address is
/// not a multicast address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot join multicast group {group}: {reason}")]
pub struct JoinError {
    /// The group refused.
    pub group: MacAddress,
    /// Why.
    pub reason: &'static str,
}

impl<N: NetworkDevice> EthernetLayer<N> {
    /// Multicast groups a layer subscribes to at most. Subscriptions come
    /// from local code, not peers; the bound keeps the filter cheap.
    pub const MAX_MULTICAST_GROUPS: usize = 32;

    /// A layer over `device`, subscribed to no multicast group.
    pub fn new(device: N) -> EthernetLayer<N> {
        EthernetLayer { device, groups: RefCell::default(), stats: Cell::default() }
    }

    /// The device below.
    pub fn device(&self) -> &N {
        &self.device
    }

    /// Counters since the layer was created.
    pub fn stats(&self) -> EthernetStats {
        self.stats.get()
    }

    /// Receives frames sent to the multicast address `group` from now on.
    /// Joining a group twice is the same as once.
    pub fn join_multicast(&self, group: MacAddress) -> Result<(), JoinError> {
        if !group.is_multicast() || group.is_broadcast() {
            return Err(JoinError { group, reason: "not a multicast address" });
        }
        let mut groups = self.groups.borrow_mut();
        if !groups.contains(&group) && groups.len() >= Self::MAX_MULTICAST_GROUPS {
            return Err(JoinError { group, reason: "the layer's limit of 32 groups is reached" });
        }
        groups.insert(group);
        Ok(())
    }

    /// Stops receiving `group`.
    pub fn leave_multicast(&self, group: MacAddress) {
        self.groups.borrow_mut().remove(&group);
    }

    /// Whether a frame to `dst` is for this interface.
    pub fn accepts(&self, dst: MacAddress) -> bool {
        dst == self.device.mac() || dst.is_broadcast() || self.groups.borrow().contains(&dst)
    }

    fn count(&self, f: impl FnOnce(&mut EthernetStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }
}

impl<N: NetworkDevice> Ethernet for EthernetLayer<N> {
    type Error = EthernetError;

    fn mac(&self) -> MacAddress {
        self.device.mac()
    }

    fn mtu(&self) -> usize {
        self.device.mtu()
    }

    /// Waits for the next frame for us, dropping (and counting) the rest.
    /// Fails with [`EthernetError::Device`] if the device fails. Cancel-safe:
    /// a frame is consumed only when it is returned or dropped as not ours.
    async fn receive(&self) -> Result<EthernetFrame, EthernetError> {
        // Each pass consumes one device frame; it ends at the first for us.
        loop {
            let frame = self.device.receive().await.map_err(|e| EthernetError::Device(e.to_string()))?;
            let repr = match EthernetPacket::new_checked(&frame[..]).and_then(|p| EthernetRepr::parse(&p)) {
                Ok(repr) => repr,
                Err(_) => {
                    self.count(|s| s.malformed += 1);
                    continue;
                }
            };
            if !self.accepts(repr.dst_addr) {
                self.count(|s| s.not_for_us += 1);
                continue;
            }
            if repr.ethertype == EtherType::VLAN {
                self.count(|s| s.vlan_dropped += 1);
                continue;
            }
            self.count(|s| s.received += 1);
            return Ok(EthernetFrame {
                src: repr.src_addr,
                dst: repr.dst_addr,
                ethertype: repr.ethertype,
                payload: frame.slice(ETHERNET_HEADER_LEN..),
            });
        }
    }

    /// Writes the header and lets `fill` write the payload; frames shorter
    /// than [`MIN_FRAME_LEN`] are padded with zeros. Fails with
    /// [`EthernetError::PayloadTooLarge`] above the MTU (nothing sent) and
    /// [`EthernetError::Device`] if the device refuses the frame.
    async fn write<R>(
        &self,
        dst: MacAddress,
        ethertype: EtherType,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, EthernetError> {
        let mtu = self.device.mtu();
        if payload_len > mtu {
            return Err(EthernetError::PayloadTooLarge { len: payload_len, mtu });
        }
        let repr = EthernetRepr { src_addr: self.device.mac(), dst_addr: dst, ethertype };
        let frame_len = repr.buffer_len(payload_len).max(MIN_FRAME_LEN);
        let r = self
            .device
            .transmit(frame_len, |buf| {
                let mut packet = EthernetPacket::new_unchecked(&mut *buf);
                repr.emit(&mut packet);
                let payload_end = ETHERNET_HEADER_LEN + payload_len;
                buf[payload_end..].fill(0);
                fill(&mut buf[ETHERNET_HEADER_LEN..payload_end])
            })
            .await
            .map_err(|e| EthernetError::Device(e.to_string()))?;
        self.count(|s| s.sent += 1);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::{Simulation, VirtualClock, VirtualSwitch};
    use core::time::Duration;
    use mirage_types::ethernet::Error as _;
    use mirage_types::ethernet::ErrorKind;

    const A: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const B: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
    const OTHER: MacAddress = MacAddress([2, 0, 0, 0, 0, 9]);

    #[test]
    fn multicast_mapping_follows_rfc_1112() {
        assert_eq!(ipv4_multicast_mac(Ipv4Addr::new(224, 129, 2, 3)), MacAddress([1, 0, 0x5e, 1, 2, 3]));
    }

    #[test]
    fn receive_filters_by_destination_and_drops_vlan() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::with_mode(&clock, 1, crate::switch::SwitchMode::Hub);
        let raw = switch.add_port(A);
        let eth = EthernetLayer::new(switch.add_port(B));
        let group = ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 251));
        eth.join_multicast(group).unwrap();
        let sim = Simulation::new(&clock);
        let got = sim
            .run_until(
                async {
                    // Frames, in order: to someone else, VLAN-tagged to us,
                    // too short, 802.3 length framing, to a group we did not
                    // join, then one each to us, broadcast and our group.
                    let frames: [(MacAddress, u16, usize); 8] = [
                        (OTHER, 0x0800, 60),
                        (B, 0x8100, 60),
                        (B, 0x0800, 10),
                        (B, 0x0040, 60),
                        (ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 9)), 0x0800, 60),
                        (B, 0x88b5, 60),
                        (MacAddress::BROADCAST, 0x0806, 60),
                        (group, 0x0800, 60),
                    ];
                    for (dst, ethertype, len) in frames {
                        raw.transmit(len, |buf| {
                            buf.fill(0x77);
                            buf[..6].copy_from_slice(&dst.0[..6.min(len)]);
                            if len >= 14 {
                                buf[6..12].copy_from_slice(&A.0);
                                buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
                            }
                        })
                        .await
                        .unwrap();
                    }
                    let mut got = alloc::vec::Vec::new();
                    for _ in 0..3 {
                        got.push(eth.receive().await.unwrap());
                    }
                    got
                },
                Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(got[0].dst, B);
        assert_eq!(got[0].ethertype, EtherType::LOCAL_EXPERIMENTAL);
        assert_eq!(got[0].payload.len(), 46);
        assert_eq!(got[1].dst, MacAddress::BROADCAST);
        assert_eq!(got[2].dst, group);
        let stats = eth.stats();
        assert_eq!((stats.not_for_us, stats.vlan_dropped, stats.malformed, stats.received), (2, 1, 2, 3));
    }

    #[test]
    fn write_pads_short_frames_and_refuses_oversized_payloads() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let raw = switch.add_port(B);
        let eth = EthernetLayer::new(switch.add_port(A));
        let sim = Simulation::new(&clock);
        let frame = sim
            .run_until(
                async {
                    eth.write(B, EtherType::ARP, 3, |p| p.copy_from_slice(b"abc")).await.unwrap();
                    let e = eth.write(B, EtherType::ARP, 1501, |_| ()).await.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
                    raw.receive().await.unwrap()
                },
                Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(frame.len(), MIN_FRAME_LEN);
        assert_eq!(&frame[0..6], &B.0);
        assert_eq!(&frame[6..12], &A.0);
        assert_eq!(&frame[12..17], &[0x08, 0x06, b'a', b'b', b'c']);
        assert!(frame[17..].iter().all(|&b| b == 0));
    }

    #[test]
    fn group_bound_is_enforced() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let eth = EthernetLayer::new(switch.add_port(A));
        for i in 0..EthernetLayer::<crate::switch::SwitchPort>::MAX_MULTICAST_GROUPS {
            eth.join_multicast(MacAddress([1, 0, 0x5e, 0, 0, i as u8])).unwrap();
        }
        assert!(eth.join_multicast(MacAddress([1, 0, 0x5e, 0, 1, 0])).is_err());
        assert!(eth.join_multicast(MacAddress([1, 0, 0x5e, 0, 0, 0])).is_ok(), "rejoining is fine");
        assert!(eth.join_multicast(B).is_err());
    }
}
