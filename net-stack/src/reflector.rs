//! A raw UDP reflector, for benchmarks that measure a stack against no
//! stack at all: frames carrying an IPv4 UDP datagram are sent back with
//! Ethernet addresses, IPv4 addresses and UDP ports swapped. Swapping keeps
//! both checksums valid (the one's-complement sum does not depend on the
//! order of the words), so nothing is parsed beyond the headers' positions
//! and nothing is recomputed. Exported with the `test-utils` feature.

use core::net::Ipv4Addr;

/// Where the UDP header starts, if `frame` is an unfragmented IPv4 UDP
/// datagram to `ip` whose headers fit in the frame.
pub fn udp_datagram_to(frame: &[u8], ip: Ipv4Addr) -> Option<usize> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip_header = frame.get(14..34)?;
    let header_len = usize::from(ip_header[0] & 0x0f) * 4;
    let more_fragments_or_offset = u16::from_be_bytes([ip_header[6], ip_header[7]]) & 0x3fff;
    if ip_header[0] >> 4 != 4 || header_len < 20 || ip_header[9] != 17 || more_fragments_or_offset != 0 {
        return None;
    }
    if ip_header[16..20] != ip.octets() {
        return None;
    }
    let udp = 14 + header_len;
    frame.get(udp..udp + 8)?;
    Some(udp)
}

/// Copies `frame` into `out` with Ethernet addresses, IPv4 addresses and
/// UDP ports swapped.
pub fn reflect_udp(frame: &[u8], out: &mut [u8], udp: usize) {
    out.copy_from_slice(frame);
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[0..6]);
    out[26..30].copy_from_slice(&frame[30..34]);
    out[30..34].copy_from_slice(&frame[26..30]);
    out[udp..udp + 2].copy_from_slice(&frame[udp + 2..udp + 4]);
    out[udp + 2..udp + 4].copy_from_slice(&frame[udp..udp + 2]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// An IPv4 UDP frame 10.0.0.1:1000 → 10.0.0.2:7 with valid checksums.
    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 4];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&7u16.to_be_bytes());
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f[42..46].copy_from_slice(b"ping");
        let ip_sum = !fold(sum(&f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let udp_sum = !fold(udp_sum(&f));
        f[40..42].copy_from_slice(&udp_sum.to_be_bytes());
        f
    }

    fn sum(bytes: &[u8]) -> u32 {
        bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum()
    }

    fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn udp_sum(f: &[u8]) -> u32 {
        let len = (f.len() - 34) as u32;
        sum(&f[26..34]) + 17 + len + sum(&f[34..])
    }

    #[test]
    fn swapped_frames_go_back_with_valid_checksums() {
        let f = frame();
        let udp = udp_datagram_to(&f, Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        let mut out = vec![0xa5; f.len()];
        reflect_udp(&f, &mut out, udp);
        assert_eq!((&out[0..6], &out[6..12]), (&f[6..12], &f[0..6]));
        assert_eq!((&out[26..30], &out[30..34]), (&[10, 0, 0, 2][..], &[10, 0, 0, 1][..]));
        assert_eq!((&out[34..36], &out[36..38]), (&7u16.to_be_bytes()[..], &1000u16.to_be_bytes()[..]));
        assert_eq!(fold(sum(&out[14..34])), 0xffff, "IPv4 header checksum");
        assert_eq!(fold(udp_sum(&out)), 0xffff, "UDP checksum");
    }

    #[test]
    fn only_whole_udp_datagrams_to_our_address_are_reflected() {
        let f = frame();
        assert!(udp_datagram_to(&f, Ipv4Addr::new(10, 0, 0, 9)).is_none());
        let mut fragment = f.clone();
        fragment[20] = 0x20;
        assert!(udp_datagram_to(&fragment, Ipv4Addr::new(10, 0, 0, 2)).is_none());
        let mut tcp = f.clone();
        tcp[23] = 6;
        assert!(udp_datagram_to(&tcp, Ipv4Addr::new(10, 0, 0, 2)).is_none());
        for len in 0..f.len() - 4 {
            assert!(udp_datagram_to(&f[..len], Ipv4Addr::new(10, 0, 0, 2)).is_none(), "{len}-byte frame");
        }
    }
}
