//! Header parsing. Every read goes through [`ptr_at`], which checks the
//! bounds against `data_end` (the check the verifier demands, and the one that
//! turns a truncated packet into `Err` instead of a misparse). Parsers take an
//! offset from the start of the frame and return what they found plus the
//! offset of the next header.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use network_types::{
    eth::EthHdr, ip::Ipv4Hdr, ip::Ipv6Hdr, tcp::TcpHdr, udp::UdpHdr, vlan::VlanHdr,
};

/// Error: the packet is truncated or a header is inconsistent.
pub struct Malformed;

/// VLAN tags we look through (802.1Q and 802.1ad, e.g. QinQ).
pub const VLAN_MAX_DEPTH: usize = 2;
/// IPv6 extension headers we walk before giving up on finding TCP. Linux
/// itself has no limit, so a longer chain is not malformed: it is counted as
/// [`Kind::Unparsed`] (per source, limited), never passed uncounted.
pub const IPV6_EXT_MAX_CHAIN: usize = 8;
/// Largest L3/L4 offset we accept. Keeps offsets bounded for the verifier and
/// is far beyond any real header stack (2 VLANs + IPv6 + 6 ext headers of at
/// most 2 KiB each would not fit an XDP frame anyway).
const MAX_HEADER_OFFSET: usize = 0x3fff;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// `v`, through a map slot: the verifier then knows nothing of it but its
/// type. Every path through a loop like the IPv6 extension walk carries a
/// different range for the offset, so the paths never merge and the rest
/// of the program is verified once per path (4^8 of them); a forgotten
/// offset is the same on every path, and the paths merge. Costs one per-CPU
/// array look-up, and only where a loop iterates.
#[inline(always)]
pub(crate) fn forget(v: usize) -> usize {
    match crate::maps::FORGET.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, used only here.
        Some(slot) => unsafe {
            core::ptr::write_volatile(slot, v as u64);
            core::ptr::read_volatile(slot) as usize
        },
        None => v,
    }
}

/// The one bounds-checked accessor.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Malformed> {
    let start = ctx.data();
    let end = ctx.data_end();
    // verifier: bound the offset before adding it to a packet pointer
    if offset > MAX_HEADER_OFFSET {
        return Err(Malformed);
    }
    if start + offset + size_of::<T>() > end {
        return Err(Malformed);
    }
    Ok((start + offset) as *const T)
}

/// Ethernet plus up to [`VLAN_MAX_DEPTH`] tags: returns the inner EtherType
/// (host order) and the offset of the L3 header.
#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Result<(u16, usize), Malformed> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let mut proto = u16::from_be(unsafe { (*eth).ether_type });
    let mut off = EthHdr::LEN;
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(ctx, off)?;
        proto = u16::from_be(unsafe { (*vlan).ether_type });
        off += VlanHdr::LEN;
    }
    Ok((proto, off))
}

/// What follows the IP header(s).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP header at `offset`.
    Tcp,
    /// A UDP header at `offset`.
    Udp,
    /// Neither TCP nor UDP.
    Other,
    /// A later fragment of something other than TCP: no L4 header here.
    Fragment,
    /// TCP the filter cannot classify: a later fragment of TCP, or an IPv6
    /// extension chain longer than [`IPV6_EXT_MAX_CHAIN`].
    Unparsed,
}

/// The L4 header: its kind, where it starts, the L3 payload length from
/// there (TCP header + data), and whether the packet is the first of several
/// fragments (a TCP header cut short is then a tiny fragment, not an
/// error). A struct with every field always set rather than an enum with
/// data: the compiler leaves an enum's unused fields undefined, and the
/// verifier refuses a program that copies an undefined register.
#[derive(Clone, Copy)]
pub struct L4 {
    pub kind: Kind,
    pub offset: usize,
    pub len: usize,
    pub first_fragment: bool,
}

impl L4 {
    #[inline(always)]
    const fn only(kind: Kind) -> L4 {
        L4 {
            kind,
            offset: 0,
            len: 0,
            first_fragment: false,
        }
    }
}

/// An IPv4 header, options included: source and destination addresses and
/// what follows.
#[inline(always)]
pub fn ipv4(ctx: &XdpContext, off: usize) -> Result<([u8; 4], [u8; 4], L4), Malformed> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    let vihl = unsafe { (*ip).vihl };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Malformed);
    }
    let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
    if tot_len < ihl {
        return Err(Malformed);
    }
    // The options must be in the frame too: probe the header's last byte.
    let _: *const u8 = ptr_at(ctx, off + ihl - 1)?;
    let src = unsafe { (*ip).src_addr };
    let dst = unsafe { (*ip).dst_addr };
    let frags = u16::from_be_bytes(unsafe { (*ip).frags });
    let frag_offset = frags & 0x1fff;
    let more_fragments = frags & 0x2000 != 0;
    let proto = unsafe { (*ip).proto };
    let l4 = match (proto, frag_offset != 0) {
        (IPPROTO_TCP, true) => L4::only(Kind::Unparsed),
        (_, true) => L4::only(Kind::Fragment),
        (IPPROTO_TCP, false) => L4 {
            kind: Kind::Tcp,
            offset: off + ihl,
            len: tot_len - ihl,
            first_fragment: more_fragments,
        },
        (IPPROTO_UDP, false) => L4 {
            kind: Kind::Udp,
            offset: off + ihl,
            len: tot_len - ihl,
            first_fragment: false,
        },
        _ => L4::only(Kind::Other),
    };
    Ok((src, dst, l4))
}

/// The fixed IPv6 header.
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// First next-header value and the offset after the fixed header.
    pub next: u8,
    pub off: usize,
    pub payload_len: usize,
}

/// An IPv6 header: addresses, and where the extension chain starts.
#[inline(always)]
pub fn ipv6(ctx: &XdpContext, off: usize) -> Result<Ipv6, Malformed> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    if unsafe { (*ip).vcf[0] } >> 4 != 6 {
        return Err(Malformed);
    }
    Ok(Ipv6 {
        src: unsafe { (*ip).src_addr },
        dst: unsafe { (*ip).dst_addr },
        next: unsafe { (*ip).next_hdr },
        off: off + Ipv6Hdr::LEN,
        payload_len: u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize,
    })
}

/// Walks at most [`IPV6_EXT_MAX_CHAIN`] extension headers starting with
/// `next` at `off`. We will not guess where TCP starts behind a longer
/// chain: it is [`Kind::Unparsed`].
#[inline(always)]
pub fn ipv6_ext(ctx: &XdpContext, ip: &Ipv6) -> Result<L4, Malformed> {
    let (mut next, mut off, payload_len) = (ip.next, ip.off, ip.payload_len);
    let start = off;
    let mut more_fragments = false;
    for _ in 0..IPV6_EXT_MAX_CHAIN {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h: *const [u8; 2] = ptr_at(ctx, off)?;
                next = unsafe { (*h)[0] };
                (unsafe { (*h)[1] } as usize + 1) * 8
            }
            IPPROTO_AH => {
                let h: *const [u8; 2] = ptr_at(ctx, off)?;
                next = unsafe { (*h)[0] };
                (unsafe { (*h)[1] } as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let h: *const [u8; 8] = ptr_at(ctx, off)?;
                let v = u16::from_be_bytes(unsafe { [(*h)[2], (*h)[3]] });
                next = unsafe { (*h)[0] };
                if v >> 3 != 0 {
                    return Ok(L4::only(if next == IPPROTO_TCP {
                        Kind::Unparsed
                    } else {
                        Kind::Fragment
                    }));
                }
                more_fragments = v & 1 != 0;
                8
            }
            _ => break,
        };
        off = forget(off + len);
    }
    if is_ipv6_ext(next) {
        return Ok(L4::only(Kind::Unparsed));
    }
    let ext_len = off - start;
    if ext_len > payload_len {
        return Err(Malformed);
    }
    let kind = match next {
        IPPROTO_TCP => Kind::Tcp,
        IPPROTO_UDP => Kind::Udp,
        _ => return Ok(L4::only(Kind::Other)),
    };
    Ok(L4 {
        kind,
        offset: off,
        len: payload_len - ext_len,
        first_fragment: more_fragments,
    })
}

#[inline(always)]
fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS
    )
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the filter needs of a TCP header.
pub struct Tcp {
    pub flags: u8,
    /// Bytes of payload after the header and its options.
    pub payload: usize,
    /// Ports as they are on the wire (network byte order).
    pub sport: u16,
    pub dport: u16,
    /// Sequence number, host order.
    pub seq: u32,
}

/// The UDP destination port (wire order).
#[inline(always)]
pub fn udp_dport(ctx: &XdpContext, off: usize) -> Result<u16, Malformed> {
    let udp: *const UdpHdr = ptr_at(ctx, off)?;
    Ok(u16::from_ne_bytes(unsafe { (*udp).dst }))
}

/// The TCP header. Options are not read, so only the fixed 20 bytes must be
/// in the frame.
#[inline(always)]
pub fn tcp(ctx: &XdpContext, off: usize, l3_payload: usize) -> Result<Tcp, Malformed> {
    let tcp: *const TcpHdr = ptr_at(ctx, off)?;
    let raw = tcp as *const u8;
    // Byte 12: data offset (high nibble); byte 13: the flags.
    let doff = ((unsafe { *raw.add(12) } >> 4) as usize) * 4;
    let flags = unsafe { *raw.add(13) };
    if doff < TcpHdr::LEN || doff > l3_payload {
        return Err(Malformed);
    }
    Ok(Tcp {
        flags,
        payload: l3_payload - doff,
        sport: u16::from_ne_bytes(unsafe { (*tcp).source }),
        dport: u16::from_ne_bytes(unsafe { (*tcp).dest }),
        seq: u32::from_be_bytes(unsafe { (*tcp).seq }),
    })
}
