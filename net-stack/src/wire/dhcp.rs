//! DHCPv4 messages, as a client sends and receives them.
//!
//! Reading list:
//! - RFC 2131 §2: the fixed BOOTP header and the "options" field starting
//!   with the magic cookie 99.130.83.99; §3.1 and §4.3.6: which options go
//!   in which message.
//! - RFC 2132: the options used here: pad (0), subnet mask (1), router (3),
//!   domain name server (6), requested IP address (50), lease time (51),
//!   message type (53), server identifier (54), parameter request list (55),
//!   maximum message size (57), renewal time T1 (58), rebinding time T2 (59),
//!   client identifier (61), end (255).
//! - RFC 1542 §2.1: BOOTP messages are at least 300 bytes; relays and some
//!   servers drop shorter ones, so [`DhcpRepr::emit`] pads to that size.
//!
//! Not implemented, and said plainly: option overload (52, RFC 2132 §9.3:
//! options continued in the `sname` and `file` fields) is not followed, and
//! long options split over several instances (RFC 3396) are not
//! concatenated: a repeated option replaces the earlier one. Unknown
//! options are skipped. Only Ethernet hardware addresses (htype 1, hlen 6)
//! are accepted.
//!
//! Bounds: at most [`MAX_ROUTERS`] routers and [`MAX_DNS_SERVERS`] DNS
//! servers are kept (the first ones, which RFC 2132 §3.5 and §3.8 say are
//! in order of preference); parsing allocates nothing. See the [module
//! contract](super#the-contract): after [`DhcpPacket::new_checked`], no
//! getter panics.

use core::net::Ipv4Addr;

use mirage_types::net::MacAddress;

use super::{need, read_u16, write_u16, WireError};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: usize = 8;
    pub const FLAGS: usize = 10;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: RangeFrom<usize> = 240..;
}

/// Bytes before the options: the BOOTP header and the magic cookie.
pub const DHCP_FIXED_LEN: usize = 240;

/// The smallest message [`DhcpRepr::emit`] writes (RFC 1542 §2.1).
pub const DHCP_MIN_MESSAGE_LEN: usize = 300;

/// The magic cookie that starts the options (RFC 2131 §3).
pub const DHCP_MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The UDP port DHCP servers listen on.
pub const DHCP_SERVER_PORT: u16 = 67;

/// The UDP port DHCP clients listen on.
pub const DHCP_CLIENT_PORT: u16 = 68;

/// Most routers kept from option 3; more are ignored.
pub const MAX_ROUTERS: usize = 4;

/// Most DNS servers kept from option 6; more are ignored.
pub const MAX_DNS_SERVERS: usize = 4;

const FLAG_BROADCAST: u16 = 0x8000;
const OP_BOOTREQUEST: u8 = 1;
const OP_BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;

/// Option codes of RFC 2132.
mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVER: u8 = 6;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// A view of a DHCP message (the UDP payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than 240 bytes.
    pub const fn new_unchecked(buffer: T) -> DhcpPacket<T> {
        DhcpPacket { buffer }
    }

    /// Wraps a buffer after checking it holds the 240 bytes of the BOOTP
    /// header and magic cookie.
    ///
    /// `Ok` means no getter panics and [`Self::options`] iterates without
    /// panicking; it does not check the cookie ([`DhcpRepr::parse`] does).
    /// Errors with [`WireError::Truncated`].
    pub fn new_checked(buffer: T) -> Result<DhcpPacket<T>, WireError> {
        need("DHCP message", buffer.as_ref().len(), DHCP_FIXED_LEN)?;
        Ok(DhcpPacket { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The BOOTP op: 1 request (client to server), 2 reply.
    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// The hardware address type (1 for Ethernet).
    pub fn hardware_type(&self) -> u8 {
        self.buffer.as_ref()[field::HTYPE]
    }

    /// The hardware address length (6 for Ethernet).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Relay hops.
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[field::HOPS]
    }

    /// The transaction ID the client chose.
    pub fn transaction_id(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::XID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Seconds since the client began acquiring or renewing.
    pub fn secs(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SECS)
    }

    /// Whether the broadcast flag is set (RFC 2131 §2: the client cannot
    /// receive unicast before it has an address).
    pub fn broadcast_flag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLAGS) & FLAG_BROADCAST != 0
    }

    /// The client's current address (`ciaddr`), when it has one.
    pub fn client_ip(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::CIADDR])
    }

    /// The address offered or assigned to the client (`yiaddr`).
    pub fn your_ip(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::YIADDR])
    }

    /// The next server in bootstrap (`siaddr`).
    pub fn server_ip(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::SIADDR])
    }

    /// The relay agent's address (`giaddr`).
    pub fn relay_agent_ip(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::GIADDR])
    }

    /// The first six bytes of `chaddr`: the client's Ethernet address.
    pub fn client_hardware_addr(&self) -> MacAddress {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::CHADDR][..6]);
        MacAddress(mac)
    }

    /// The `sname` field, raw (a NUL-terminated server host name, or
    /// options under option overload).
    pub fn server_name(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SNAME]
    }

    /// The `file` field, raw (a NUL-terminated boot file name, or options
    /// under option overload).
    pub fn boot_file(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FILE]
    }

    /// The four bytes where the magic cookie belongs.
    pub fn magic_cookie(&self) -> [u8; 4] {
        let mut cookie = [0u8; 4];
        cookie.copy_from_slice(&self.buffer.as_ref()[field::MAGIC]);
        cookie
    }

    /// The options after the cookie, one `(code, data)` at a time; pads are
    /// skipped and the end option stops the iteration. An option whose
    /// length runs past the buffer yields one [`WireError::Truncated`] and
    /// ends the iteration.
    pub fn options(&self) -> DhcpOptions<'_> {
        DhcpOptions { rest: &self.buffer.as_ref()[field::OPTIONS] }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DhcpPacket<T> {
    /// Sets the BOOTP op.
    pub fn set_op(&mut self, value: u8) {
        self.buffer.as_mut()[field::OP] = value;
    }

    /// Sets the hardware type and length.
    pub fn set_hardware_type_and_len(&mut self, htype: u8, hlen: u8) {
        self.buffer.as_mut()[field::HTYPE] = htype;
        self.buffer.as_mut()[field::HLEN] = hlen;
    }

    /// Sets the relay hops.
    pub fn set_hops(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOPS] = value;
    }

    /// Sets the transaction ID.
    pub fn set_transaction_id(&mut self, value: u32) {
        self.buffer.as_mut()[field::XID].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the seconds elapsed.
    pub fn set_secs(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SECS, value);
    }

    /// Sets the flags: the broadcast bit, the others zero (RFC 2131 §2:
    /// "MUST be zero").
    pub fn set_broadcast_flag(&mut self, broadcast: bool) {
        write_u16(self.buffer.as_mut(), field::FLAGS, if broadcast { FLAG_BROADCAST } else { 0 });
    }

    /// Sets `ciaddr`.
    pub fn set_client_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::CIADDR].copy_from_slice(&addr.octets());
    }

    /// Sets `yiaddr`.
    pub fn set_your_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::YIADDR].copy_from_slice(&addr.octets());
    }

    /// Sets `siaddr`.
    pub fn set_server_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SIADDR].copy_from_slice(&addr.octets());
    }

    /// Sets `giaddr`.
    pub fn set_relay_agent_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::GIADDR].copy_from_slice(&addr.octets());
    }

    /// Sets `chaddr` to an Ethernet address followed by ten zero bytes.
    pub fn set_client_hardware_addr(&mut self, addr: MacAddress) {
        let chaddr = &mut self.buffer.as_mut()[field::CHADDR];
        chaddr[..6].copy_from_slice(&addr.0);
        chaddr[6..].fill(0);
    }

    /// Zeroes `sname` and `file` (unused by clients).
    pub fn clear_server_name_and_boot_file(&mut self) {
        self.buffer.as_mut()[field::SNAME.start..field::FILE.end].fill(0);
    }

    /// Writes the magic cookie.
    pub fn set_magic_cookie(&mut self) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&DHCP_MAGIC_COOKIE);
    }

    /// The options area, to write into.
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::OPTIONS]
    }
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    let mut octets = [0u8; 4];
    octets.copy_from_slice(bytes);
    Ipv4Addr::from(octets)
}

/// An iterator over the options of a DHCP message; see
/// [`DhcpPacket::options`].
#[derive(Clone, Debug)]
pub struct DhcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for DhcpOptions<'a> {
    type Item = Result<(u8, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Each turn consumes at least one byte, so the loop ends within the
        // buffer's length.
        loop {
            let (&code, after_code) = self.rest.split_first()?;
            match code {
                option::PAD => self.rest = after_code,
                option::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let Some((&len, after_len)) = after_code.split_first() else {
                        self.rest = &[];
                        return Some(Err(WireError::Truncated { what: "DHCP option length", len: 0, needed: 1 }));
                    };
                    let len = usize::from(len);
                    if after_len.len() < len {
                        let available = after_len.len();
                        self.rest = &[];
                        return Some(Err(WireError::Truncated { what: "DHCP option", len: available, needed: len }));
                    }
                    let (data, rest) = after_len.split_at(len);
                    self.rest = rest;
                    return Some(Ok((code, data)));
                }
            }
        }
    }
}

/// The DHCP message types (option 53, RFC 2132 §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhcpMessageType {
    /// Client looks for servers (1).
    Discover,
    /// Server offers an address (2).
    Offer,
    /// Client asks for the offered address, or renews (3).
    Request,
    /// Client found the address in use (4).
    Decline,
    /// Server confirms the lease (5).
    Ack,
    /// Server refuses the request (6).
    Nak,
    /// Client gives the address back (7).
    Release,
    /// Client asks for configuration only (8).
    Inform,
}

impl DhcpMessageType {
    /// The code on the wire.
    pub const fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The type with this code, if defined by RFC 2132.
    pub fn from_code(code: u8) -> Option<DhcpMessageType> {
        use DhcpMessageType::*;
        [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform].get(usize::from(code).checked_sub(1)?).copied()
    }

    /// Whether servers send this type (BOOTP op 2) rather than clients.
    pub const fn is_from_server(self) -> bool {
        matches!(self, DhcpMessageType::Offer | DhcpMessageType::Ack | DhcpMessageType::Nak)
    }
}

/// Up to `N` IPv4 addresses from an option, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressList<const N: usize> {
    // Entries past `len` stay UNSPECIFIED so derived equality is equality
    // of the lists.
    addrs: [Ipv4Addr; N],
    len: usize,
}

impl<const N: usize> AddressList<N> {
    /// An empty list.
    pub const fn new() -> AddressList<N> {
        AddressList { addrs: [Ipv4Addr::UNSPECIFIED; N], len: 0 }
    }

    /// The first `N` addresses of `addrs`; the rest are dropped.
    pub fn from_slice(addrs: &[Ipv4Addr]) -> AddressList<N> {
        let mut list = AddressList::new();
        for &addr in addrs.iter().take(N) {
            list.addrs[list.len] = addr;
            list.len += 1;
        }
        list
    }

    /// The addresses.
    pub fn as_slice(&self) -> &[Ipv4Addr] {
        &self.addrs[..self.len]
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `N` addresses of option data (four bytes each).
    fn from_option(data: &[u8], what: &'static str) -> Result<AddressList<N>, WireError> {
        if data.is_empty() || data.len() % 4 != 0 {
            return Err(WireError::Malformed { what });
        }
        let mut list = AddressList::new();
        for chunk in data.chunks_exact(4).take(N) {
            list.addrs[list.len] = ipv4(chunk);
            list.len += 1;
        }
        Ok(list)
    }
}

impl<const N: usize> Default for AddressList<N> {
    fn default() -> Self {
        AddressList::new()
    }
}

/// A decoded DHCP message: the header fields and the RFC 2132 options a
/// client uses (see the module doc for what is left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DhcpRepr<'a> {
    /// The message type (option 53); it also fixes the BOOTP op.
    pub message_type: DhcpMessageType,
    /// The transaction ID.
    pub transaction_id: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// The broadcast flag.
    pub broadcast: bool,
    /// The client's Ethernet address (`chaddr`).
    pub client_hardware_addr: MacAddress,
    /// `ciaddr`: the client's address when renewing, else 0.0.0.0.
    pub client_ip: Ipv4Addr,
    /// `yiaddr`: the address offered or assigned.
    pub your_ip: Ipv4Addr,
    /// `siaddr`: the next bootstrap server.
    pub server_ip: Ipv4Addr,
    /// `giaddr`: the relay agent.
    pub relay_agent_ip: Ipv4Addr,
    /// Subnet mask (option 1).
    pub subnet_mask: Option<Ipv4Addr>,
    /// Routers, in order of preference (option 3), at most [`MAX_ROUTERS`].
    pub routers: AddressList<MAX_ROUTERS>,
    /// DNS servers, in order of preference (option 6), at most
    /// [`MAX_DNS_SERVERS`].
    pub dns_servers: AddressList<MAX_DNS_SERVERS>,
    /// Requested IP address (option 50).
    pub requested_ip: Option<Ipv4Addr>,
    /// Lease time in seconds (option 51; 0xffffffff is infinite).
    pub lease_duration: Option<u32>,
    /// Server identifier (option 54).
    pub server_identifier: Option<Ipv4Addr>,
    /// Parameter request list (option 55): option codes the client wants.
    pub parameter_request_list: Option<&'a [u8]>,
    /// Largest DHCP message the client accepts (option 57, at least 576).
    pub max_message_size: Option<u16>,
    /// Renewal time T1 in seconds (option 58).
    pub renew_duration: Option<u32>,
    /// Rebinding time T2 in seconds (option 59).
    pub rebind_duration: Option<u32>,
    /// Client identifier (option 61): type byte and identifier.
    pub client_identifier: Option<&'a [u8]>,
}

impl<'a> DhcpRepr<'a> {
    /// Decodes a checked message.
    ///
    /// `Ok` means the cookie is right, the hardware type is Ethernet, the
    /// message type option is present and agrees with the BOOTP op, and
    /// every option used here has the length RFC 2132 gives it. Errors
    /// with [`WireError::Malformed`] (missing cookie or message type, op
    /// disagreeing with the type, an option of the wrong length),
    /// [`WireError::Unsupported`] (hardware other than Ethernet, unknown
    /// message type) or [`WireError::Truncated`] (an option running past
    /// the end).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &DhcpPacket<&'a T>) -> Result<DhcpRepr<'a>, WireError> {
        if packet.magic_cookie() != DHCP_MAGIC_COOKIE {
            return Err(WireError::Malformed { what: "DHCP magic cookie missing (a BOOTP message?)" });
        }
        if packet.hardware_type() != HTYPE_ETHERNET {
            return Err(WireError::Unsupported { what: "DHCP hardware type", value: packet.hardware_type().into() });
        }
        if packet.hardware_len() != 6 {
            return Err(WireError::Malformed { what: "DHCP hardware address length is not 6 for Ethernet" });
        }
        let buffer: &'a T = packet.buffer;
        let options = DhcpOptions { rest: &buffer.as_ref()[field::OPTIONS] };

        let mut message_type = None;
        let mut repr = DhcpRepr {
            message_type: DhcpMessageType::Discover,
            transaction_id: packet.transaction_id(),
            secs: packet.secs(),
            broadcast: packet.broadcast_flag(),
            client_hardware_addr: packet.client_hardware_addr(),
            client_ip: packet.client_ip(),
            your_ip: packet.your_ip(),
            server_ip: packet.server_ip(),
            relay_agent_ip: packet.relay_agent_ip(),
            subnet_mask: None,
            routers: AddressList::new(),
            dns_servers: AddressList::new(),
            requested_ip: None,
            lease_duration: None,
            server_identifier: None,
            parameter_request_list: None,
            max_message_size: None,
            renew_duration: None,
            rebind_duration: None,
            client_identifier: None,
        };
        for item in options {
            let (code, data) = item?;
            match code {
                option::MESSAGE_TYPE => {
                    let [code] = data else {
                        return Err(WireError::Malformed { what: "DHCP message type option (53) is not 1 byte" });
                    };
                    message_type = Some(
                        DhcpMessageType::from_code(*code)
                            .ok_or(WireError::Unsupported { what: "DHCP message type", value: (*code).into() })?,
                    );
                }
                option::SUBNET_MASK => {
                    repr.subnet_mask = Some(addr_option(data, "DHCP subnet mask (1) is not 4 bytes")?)
                }
                option::ROUTER => {
                    repr.routers = AddressList::from_option(data, "DHCP router option (3) is not a list of addresses")?
                }
                option::DNS_SERVER => {
                    repr.dns_servers =
                        AddressList::from_option(data, "DHCP DNS server option (6) is not a list of addresses")?
                }
                option::REQUESTED_IP => {
                    repr.requested_ip = Some(addr_option(data, "DHCP requested address (50) is not 4 bytes")?)
                }
                option::LEASE_TIME => {
                    repr.lease_duration = Some(u32_option(data, "DHCP lease time (51) is not 4 bytes")?)
                }
                option::SERVER_ID => {
                    repr.server_identifier = Some(addr_option(data, "DHCP server identifier (54) is not 4 bytes")?)
                }
                option::PARAMETER_REQUEST_LIST => repr.parameter_request_list = Some(data),
                option::MAX_MESSAGE_SIZE => {
                    let [high, low] = data else {
                        return Err(WireError::Malformed { what: "DHCP maximum message size (57) is not 2 bytes" });
                    };
                    repr.max_message_size = Some(u16::from_be_bytes([*high, *low]));
                }
                option::RENEWAL_TIME => {
                    repr.renew_duration = Some(u32_option(data, "DHCP renewal time (58) is not 4 bytes")?)
                }
                option::REBINDING_TIME => {
                    repr.rebind_duration = Some(u32_option(data, "DHCP rebinding time (59) is not 4 bytes")?)
                }
                option::CLIENT_ID => {
                    // RFC 2132 §9.14: a type byte and at least one byte of identifier.
                    if data.len() < 2 {
                        return Err(WireError::Malformed { what: "DHCP client identifier (61) shorter than 2 bytes" });
                    }
                    repr.client_identifier = Some(data)
                }
                _ => {}
            }
        }
        repr.message_type =
            message_type.ok_or(WireError::Malformed { what: "DHCP message type option (53) missing" })?;
        let expected_op = if repr.message_type.is_from_server() { OP_BOOTREPLY } else { OP_BOOTREQUEST };
        if packet.op() != expected_op {
            return Err(WireError::Malformed { what: "DHCP BOOTP op disagrees with the message type" });
        }
        Ok(repr)
    }

    /// Bytes of the options this value emits, end option included.
    fn options_len(&self) -> usize {
        let addr = |present: bool| if present { 6 } else { 0 };
        let list = |len: usize| if len == 0 { 0 } else { 2 + 4 * len };
        let bytes = |data: Option<&[u8]>| data.map_or(0, |d| 2 + d.len());
        3 + addr(self.subnet_mask.is_some())
            + list(self.routers.as_slice().len())
            + list(self.dns_servers.as_slice().len())
            + addr(self.requested_ip.is_some())
            + addr(self.lease_duration.is_some())
            + addr(self.server_identifier.is_some())
            + bytes(self.parameter_request_list)
            + if self.max_message_size.is_some() { 4 } else { 0 }
            + addr(self.renew_duration.is_some())
            + addr(self.rebind_duration.is_some())
            + bytes(self.client_identifier)
            + 1
    }

    /// Bytes the message takes: the fixed part, the options, and pad bytes
    /// up to the 300-byte BOOTP minimum (RFC 1542 §2.1).
    pub fn buffer_len(&self) -> usize {
        (DHCP_FIXED_LEN + self.options_len()).max(DHCP_MIN_MESSAGE_LEN)
    }

    /// Writes the whole message: header, cookie, options, end option, and
    /// pad bytes to the end of the buffer.
    ///
    /// Panics (a bug in the caller) if the buffer is shorter than
    /// [`Self::buffer_len`], or if the parameter request list or client
    /// identifier is longer than 255 bytes (an option's length is one byte).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut DhcpPacket<T>) {
        assert!(packet.buffer.as_ref().len() >= self.buffer_len(), "DHCP buffer shorter than the message");
        packet.set_op(if self.message_type.is_from_server() { OP_BOOTREPLY } else { OP_BOOTREQUEST });
        packet.set_hardware_type_and_len(HTYPE_ETHERNET, 6);
        packet.set_hops(0);
        packet.set_transaction_id(self.transaction_id);
        packet.set_secs(self.secs);
        packet.set_broadcast_flag(self.broadcast);
        packet.set_client_ip(self.client_ip);
        packet.set_your_ip(self.your_ip);
        packet.set_server_ip(self.server_ip);
        packet.set_relay_agent_ip(self.relay_agent_ip);
        packet.set_client_hardware_addr(self.client_hardware_addr);
        packet.clear_server_name_and_boot_file();
        packet.set_magic_cookie();

        let mut out = OptionWriter { buf: packet.options_mut(), at: 0 };
        // RFC 2131 §4.1 puts no order on options; the message type goes
        // first because some servers look for it there.
        out.write(option::MESSAGE_TYPE, &[self.message_type.code()]);
        if let Some(id) = self.client_identifier {
            out.write(option::CLIENT_ID, id);
        }
        if let Some(addr) = self.requested_ip {
            out.write(option::REQUESTED_IP, &addr.octets());
        }
        if let Some(addr) = self.server_identifier {
            out.write(option::SERVER_ID, &addr.octets());
        }
        if let Some(secs) = self.lease_duration {
            out.write(option::LEASE_TIME, &secs.to_be_bytes());
        }
        if let Some(secs) = self.renew_duration {
            out.write(option::RENEWAL_TIME, &secs.to_be_bytes());
        }
        if let Some(secs) = self.rebind_duration {
            out.write(option::REBINDING_TIME, &secs.to_be_bytes());
        }
        if let Some(mask) = self.subnet_mask {
            out.write(option::SUBNET_MASK, &mask.octets());
        }
        out.write_addresses(option::ROUTER, self.routers.as_slice());
        out.write_addresses(option::DNS_SERVER, self.dns_servers.as_slice());
        if let Some(list) = self.parameter_request_list {
            out.write(option::PARAMETER_REQUEST_LIST, list);
        }
        if let Some(size) = self.max_message_size {
            out.write(option::MAX_MESSAGE_SIZE, &size.to_be_bytes());
        }
        let at = out.at;
        let options = packet.options_mut();
        options[at] = option::END;
        options[at + 1..].fill(option::PAD);
    }
}

/// Appends options to the options area; the caller checked its size.
struct OptionWriter<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl OptionWriter<'_> {
    fn write(&mut self, code: u8, data: &[u8]) {
        let len = u8::try_from(data.len()).expect("a DHCP option's data is at most 255 bytes");
        self.buf[self.at] = code;
        self.buf[self.at + 1] = len;
        self.buf[self.at + 2..self.at + 2 + data.len()].copy_from_slice(data);
        self.at += 2 + data.len();
    }

    fn write_addresses(&mut self, code: u8, addrs: &[Ipv4Addr]) {
        if addrs.is_empty() {
            return;
        }
        // At most four addresses (MAX_ROUTERS, MAX_DNS_SERVERS): 16 bytes.
        let mut data = [0u8; 4 * 4];
        for (slot, addr) in data.chunks_exact_mut(4).zip(addrs) {
            slot.copy_from_slice(&addr.octets());
        }
        self.write(code, &data[..4 * addrs.len()]);
    }
}

fn addr_option(data: &[u8], what: &'static str) -> Result<Ipv4Addr, WireError> {
    match data {
        [a, b, c, d] => Ok(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => Err(WireError::Malformed { what }),
    }
}

fn u32_option(data: &[u8], what: &'static str) -> Result<u32, WireError> {
    match data {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(WireError::Malformed { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    const CLIENT_MAC: MacAddress = MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    /// A DHCPACK laid out by hand from RFC 2131 §2 and RFC 2132, with two
    /// options this module skips (28 and 12) among the ones it reads.
    fn ack_bytes() -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[0] = 2; // BOOTREPLY
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x3903_f326u32.to_be_bytes());
        b[16..20].copy_from_slice(&[192, 168, 122, 77]); // yiaddr
        b[20..24].copy_from_slice(&[192, 168, 122, 1]); // siaddr
        b[28..34].copy_from_slice(&CLIENT_MAC.0);
        b[236..240].copy_from_slice(&DHCP_MAGIC_COOKIE);
        b.extend_from_slice(&[53, 1, 5]); // DHCPACK
        b.extend_from_slice(&[54, 4, 192, 168, 122, 1]);
        b.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]); // 3600 s
        b.extend_from_slice(&[58, 4, 0, 0, 0x07, 0x08]); // 1800 s
        b.extend_from_slice(&[59, 4, 0, 0, 0x0c, 0x4e]); // 3150 s
        b.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        b.extend_from_slice(&[28, 4, 192, 168, 122, 255]); // broadcast address: not used here, skipped
        b.extend_from_slice(&[3, 4, 192, 168, 122, 1]);
        b.extend_from_slice(&[6, 8, 192, 168, 122, 1, 9, 9, 9, 9]);
        b.extend_from_slice(&[12, 6, b'm', b'i', b'r', b'a', b'g', b'e']); // host name, skipped
        b.push(255);
        // RFC 1542 §2.1 minimum; these options already go past it.
        let len = b.len().max(DHCP_MIN_MESSAGE_LEN);
        b.resize(len, 0);
        b
    }

    fn parse(bytes: &[u8]) -> Result<DhcpRepr<'_>, WireError> {
        DhcpRepr::parse(&DhcpPacket::new_checked(bytes)?)
    }

    #[test]
    fn parses_an_ack() {
        let bytes = ack_bytes();
        let repr = parse(&bytes).unwrap();
        assert_eq!(repr.message_type, DhcpMessageType::Ack);
        assert_eq!(repr.transaction_id, 0x3903_f326);
        assert_eq!(repr.client_hardware_addr, CLIENT_MAC);
        assert_eq!(repr.your_ip, Ipv4Addr::new(192, 168, 122, 77));
        assert_eq!(repr.server_identifier, Some(Ipv4Addr::new(192, 168, 122, 1)));
        assert_eq!(
            (repr.lease_duration, repr.renew_duration, repr.rebind_duration),
            (Some(3600), Some(1800), Some(3150))
        );
        assert_eq!(repr.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(repr.routers.as_slice(), &[Ipv4Addr::new(192, 168, 122, 1)]);
        assert_eq!(repr.dns_servers.as_slice(), &[Ipv4Addr::new(192, 168, 122, 1), Ipv4Addr::new(9, 9, 9, 9)]);
        assert_eq!(repr.client_identifier, None);
    }

    #[test]
    fn emitting_a_discover_parses_back_and_pads_to_300() {
        // RFC 2131 §4.4.1: a DISCOVER from an unconfigured client.
        let repr = DhcpRepr {
            message_type: DhcpMessageType::Discover,
            transaction_id: 0xdead_beef,
            secs: 0,
            broadcast: true,
            client_hardware_addr: CLIENT_MAC,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            subnet_mask: None,
            routers: AddressList::new(),
            dns_servers: AddressList::new(),
            requested_ip: None,
            lease_duration: None,
            server_identifier: None,
            parameter_request_list: Some(&[1, 3, 6, 51, 58, 59]),
            max_message_size: Some(1500),
            renew_duration: None,
            rebind_duration: None,
            client_identifier: Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        };
        assert_eq!(repr.buffer_len(), 300);
        let mut bytes = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes[0], 1, "BOOTREQUEST");
        assert_eq!(&bytes[10..12], &[0x80, 0x00], "broadcast flag");
        assert_eq!(&bytes[240..243], &[53, 1, 1]);
        assert_eq!(parse(&bytes).unwrap(), repr);
    }

    #[test]
    fn keeps_at_most_the_bounded_number_of_servers() {
        let mut bytes = ack_bytes();
        bytes.truncate(bytes.iter().rposition(|&b| b == 255).unwrap());
        bytes.push(6);
        bytes.push(4 * 6);
        for i in 0..6 {
            bytes.extend_from_slice(&[10, 0, 0, i]);
        }
        bytes.push(255);
        let repr = parse(&bytes).unwrap();
        let expected: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(repr.dns_servers.as_slice(), &expected[..]);
    }

    #[test]
    fn rejects_what_is_not_a_dhcp_message_for_ethernet() {
        let mut bad = ack_bytes();
        bad[236] = 0;
        assert!(matches!(parse(&bad), Err(WireError::Malformed { .. })), "cookie");
        let mut bad = ack_bytes();
        bad[1] = 6;
        assert!(matches!(parse(&bad), Err(WireError::Unsupported { value: 6, .. })), "htype");
        let mut bad = ack_bytes();
        bad[0] = 1;
        assert!(matches!(parse(&bad), Err(WireError::Malformed { .. })), "op");
        let mut bad = ack_bytes();
        bad[242] = 9;
        assert!(matches!(parse(&bad), Err(WireError::Unsupported { value: 9, .. })), "message type");
        let mut bad = ack_bytes();
        bad[240] = 0; // the message type becomes a pad, then a 5-byte subnet mask
        assert!(matches!(parse(&bad), Err(WireError::Malformed { what: "DHCP subnet mask (1) is not 4 bytes" })));
        let mut bad = ack_bytes();
        bad[244] = 5; // server id claims 5 bytes
        assert!(matches!(parse(&bad), Err(WireError::Malformed { .. })), "option length");
        let mut no_type = ack_bytes();
        no_type[240..243].fill(0);
        assert!(matches!(parse(&no_type), Err(WireError::Malformed { what: "DHCP message type option (53) missing" })));
        let mut runs_off = ack_bytes();
        runs_off.truncate(244); // server identifier cut mid-option
        assert!(matches!(parse(&runs_off), Err(WireError::Truncated { .. })));
        assert!(matches!(DhcpPacket::new_checked(&ack_bytes()[..239]), Err(WireError::Truncated { .. })));
    }

    type Addr = [u8; 4];

    /// Owned data a [`DhcpRepr`] can borrow, for property tests.
    #[derive(Debug, Clone)]
    struct Owned {
        fixed: (u8, u32, u16, bool, [u8; 6], [Addr; 4]),
        mask: Option<Addr>,
        routers: Vec<Addr>,
        dns: Vec<Addr>,
        requested: Option<Addr>,
        server: Option<Addr>,
        times: (Option<u32>, Option<u32>, Option<u32>, Option<u16>),
        prl: Option<Vec<u8>>,
        client_id: Option<Vec<u8>>,
    }

    impl Owned {
        fn repr(&self) -> DhcpRepr<'_> {
            let (ty, xid, secs, broadcast, mac, [ci, yi, si, gi]) = self.fixed;
            let Owned { mask, ref routers, ref dns, requested, server, .. } = *self;
            let (lease, t1, t2, max) = self.times;
            let addrs = |v: &[[u8; 4]]| v.iter().map(|&a| Ipv4Addr::from(a)).collect::<Vec<_>>();
            DhcpRepr {
                message_type: DhcpMessageType::from_code(ty).unwrap(),
                transaction_id: xid,
                secs,
                broadcast,
                client_hardware_addr: MacAddress(mac),
                client_ip: ci.into(),
                your_ip: yi.into(),
                server_ip: si.into(),
                relay_agent_ip: gi.into(),
                subnet_mask: mask.map(Ipv4Addr::from),
                routers: AddressList::from_slice(&addrs(routers)),
                dns_servers: AddressList::from_slice(&addrs(dns)),
                requested_ip: requested.map(Ipv4Addr::from),
                lease_duration: lease,
                server_identifier: server.map(Ipv4Addr::from),
                parameter_request_list: self.prl.as_deref(),
                max_message_size: max,
                renew_duration: t1,
                rebind_duration: t2,
                client_identifier: self.client_id.as_deref(),
            }
        }
    }

    fn owned_strategy() -> impl Strategy<Value = Owned> {
        let addr = any::<[u8; 4]>;
        let list = || proptest::collection::vec(any::<[u8; 4]>(), 0..=4);
        (
            (1u8..=8, any::<u32>(), any::<u16>(), any::<bool>(), any::<[u8; 6]>(), any::<[[u8; 4]; 4]>()),
            (proptest::option::of(addr()), list(), list(), proptest::option::of(addr()), proptest::option::of(addr())),
            any::<(Option<u32>, Option<u32>, Option<u32>, Option<u16>)>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 2..40)),
        )
            .prop_map(|(fixed, (mask, routers, dns, requested, server), times, prl, client_id)| Owned {
                fixed,
                mask,
                routers,
                dns,
                requested,
                server,
                times,
                prl,
                client_id,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(owned in owned_strategy()) {
            let repr = owned.repr();
            let mut bytes = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(parse(&bytes).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(options in proptest::collection::vec(any::<u8>(), 0..120), fixed: bool) {
            // Arbitrary options behind a valid header (or an arbitrary one):
            // random bytes alone would almost never reach option parsing.
            let mut bytes = if fixed { ack_bytes()[..240].to_vec() } else { options.iter().cycle().take(240).copied().collect() };
            bytes.extend_from_slice(&options);
            if let Ok(p) = DhcpPacket::new_checked(&bytes[..]) {
                let _ = (p.op(), p.hardware_type(), p.hardware_len(), p.hops(), p.transaction_id(), p.secs());
                let _ = (p.broadcast_flag(), p.client_ip(), p.your_ip(), p.server_ip(), p.relay_agent_ip());
                let _ = (p.client_hardware_addr(), p.server_name(), p.boot_file(), p.magic_cookie());
                prop_assert!(p.options().count() <= options.len());
                let _ = DhcpRepr::parse(&p);
            }
        }
    }
}
