//! Does a packet belong to a connection of this host? The kernel knows: its
//! socket look-up (`bpf_skc_lookup_tcp`, the same tables the TCP stack uses)
//! finds established, request (SYN-RECV) and TIME-WAIT sockets by 4-tuple,
//! and falls back to a listener on the port. We keep no connection table of
//! our own. Every reference the look-up returns is released on every path.
//!
//! A look-up costs tens of nanoseconds, so [`Conn`] only performs it when
//! asked, at most once per packet.

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::{
        bpf_probe_read_kernel,
        generated::{
            bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp, bpf_skc_to_tcp_request_sock,
            bpf_skc_to_tcp_sock, bpf_tcp_check_syncookie,
        },
    },
    programs::XdpContext,
};
use core::{ffi::c_void, mem::size_of};

use crate::parse::ptr_at;

/// Byte offsets of `rcv_nxt` (u32) and `bytes_received` (u64) in the
/// running kernel's `struct tcp_sock`, and of `rcv_isn` (u32) in its
/// `struct tcp_request_sock`, from its BTF: the loader sets them before
/// load (`override_global`); 0 = unknown: empty connections go uncounted.
#[unsafe(no_mangle)]
static TCP_SOCK_RCV_NXT: u32 = 0;
#[unsafe(no_mangle)]
static TCP_SOCK_BYTES_RECEIVED: u32 = 0;
#[unsafe(no_mangle)]
static TCP_REQ_RCV_ISN: u32 = 0;

/// `BPF_F_CURRENT_NETNS`: the namespace of the receiving device.
const CURRENT_NETNS: u64 = u64::MAX;
/// `TCP_LISTEN` and `TCP_NEW_SYN_RECV` from include/net/tcp_states.h.
const TCP_LISTEN: u32 = 10;
const TCP_NEW_SYN_RECV: u32 = 12;
/// Bytes of `struct bpf_sock_tuple` that hold an IPv4 tuple.
const TUPLE_V4: u32 = 12;
/// The fixed IPv4 and TCP headers, as the syncookie check reads them.
const IPV4_HDR: usize = 20;
const TCP_HDR: usize = 20;

/// What the look-up found for a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sock {
    /// Not looked up yet.
    Unknown,
    /// No socket: a stray packet (or a closed port, for a SYN).
    None,
    /// Only a listener on the port: a stray packet, unless it is a SYN.
    Listen,
    /// A listener, and the packet is an ACK carrying a valid kernel
    /// syncookie: a handshake completing while the host answers with cookies.
    Cookie,
    /// A request socket (SYN-RECV): the ACK completes a handshake.
    Request,
    /// An established (or closing, or TIME-WAIT) connection.
    Connected,
    /// A request or established socket, and the packet (a FIN or RST)
    /// closes it before the source sent any data: it comes at the first
    /// sequence number the source could have used, and the socket has
    /// received nothing.
    Empty,
}

/// What to find out beyond the socket's state.
#[derive(Clone, Copy)]
pub enum Ask {
    Nothing,
    /// A bare ACK: a listener match is checked for a kernel syncookie.
    Cookie,
    /// A FIN or RST with this sequence number (host order): does it close
    /// an empty connection?
    Empty {
        seq: u32,
    },
}

impl Sock {
    /// The packet belongs to a connection of this host.
    #[inline(always)]
    pub fn in_connection(self) -> bool {
        matches!(
            self,
            Sock::Cookie | Sock::Request | Sock::Connected | Sock::Empty
        )
    }

    /// The packet completes a handshake.
    #[inline(always)]
    pub fn completes(self) -> bool {
        matches!(self, Sock::Cookie | Sock::Request)
    }
}

/// Looks up the TCP socket for this 4-tuple (IPv4 addresses in the first
/// four bytes, ports in wire order) and, if it is a listener, returns what
/// `f` makes of it; the reference is released on every path.
#[inline(always)]
pub fn listener<T>(
    ctx: &XdpContext,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ports: (u16, u16),
    f: impl FnOnce(*mut bpf_sock) -> Option<T>,
) -> Option<T> {
    let (mut tuple, size) = Conn::new(ctx, v6, src, dst, ports, 0, 0).tuple();
    // SAFETY: the helper reads `size` bytes of the tuple on our stack.
    let sk =
        unsafe { bpf_skc_lookup_tcp(ctx.ctx as *mut c_void, &mut tuple, size, CURRENT_NETNS, 0) };
    if sk.is_null() {
        return None;
    }
    // SAFETY: a non-null socket from the look-up.
    let out = match unsafe { (*sk).state } {
        TCP_LISTEN => f(sk),
        _ => None,
    };
    // SAFETY: releases the reference the look-up took.
    unsafe { bpf_sk_release(sk as *mut c_void) };
    out
}

/// A packet's 4-tuple and where its headers are, for a look-up.
pub struct Conn<'a> {
    ctx: &'a XdpContext,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    /// Wire order.
    sport: u16,
    dport: u16,
    /// Offsets of the IP and TCP headers (the syncookie check reads them).
    l3: usize,
    l4: usize,
}

impl<'a> Conn<'a> {
    /// IPv4 addresses go in the first four bytes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'a XdpContext,
        v6: bool,
        src: [u8; 16],
        dst: [u8; 16],
        ports: (u16, u16),
        l3: usize,
        l4: usize,
    ) -> Self {
        Conn {
            ctx,
            v6,
            src,
            dst,
            sport: ports.0,
            dport: ports.1,
            l3,
            l4,
        }
    }

    #[inline(always)]
    fn tuple(&self) -> (bpf_sock_tuple, u32) {
        // SAFETY: a plain C union of integers; all-zero is a valid value.
        let mut t: bpf_sock_tuple = unsafe { core::mem::zeroed() };
        // SAFETY: writing the member we then pass the size of.
        unsafe {
            if self.v6 {
                let v6 = &mut t.__bindgen_anon_1.ipv6;
                v6.saddr = words(&self.src);
                v6.daddr = words(&self.dst);
                v6.sport = self.sport;
                v6.dport = self.dport;
            } else {
                let v4 = &mut t.__bindgen_anon_1.ipv4;
                v4.saddr = u32::from_ne_bytes([self.src[0], self.src[1], self.src[2], self.src[3]]);
                v4.daddr = u32::from_ne_bytes([self.dst[0], self.dst[1], self.dst[2], self.dst[3]]);
                v4.sport = self.sport;
                v4.dport = self.dport;
            }
        }
        let size = if self.v6 {
            size_of::<bpf_sock_tuple>() as u32
        } else {
            TUPLE_V4
        };
        (t, size)
    }

    /// Looks the TCP packet up, and finds out what `ask` asks.
    #[inline(always)]
    pub fn tcp(&self, ask: Ask) -> Sock {
        let (mut tuple, size) = self.tuple();
        // SAFETY: the helper reads `size` bytes of the tuple on our stack.
        let sk = unsafe {
            bpf_skc_lookup_tcp(
                self.ctx.ctx as *mut c_void,
                &mut tuple,
                size,
                CURRENT_NETNS,
                0,
            )
        };
        if sk.is_null() {
            return Sock::None;
        }
        // SAFETY: a non-null socket from the look-up; `state` is readable on
        // a sock_common.
        let state = unsafe { (*sk).state };
        let found = match (state, ask) {
            (TCP_LISTEN, Ask::Cookie) if self.cookie_ok(sk) => Sock::Cookie,
            (TCP_LISTEN, _) => Sock::Listen,
            (TCP_NEW_SYN_RECV, Ask::Empty { seq }) if request_empty(sk, seq) => Sock::Empty,
            (TCP_NEW_SYN_RECV, _) => Sock::Request,
            (_, Ask::Empty { seq }) if established_empty(sk, seq) => Sock::Empty,
            _ => Sock::Connected,
        };
        // SAFETY: releases the reference the look-up took.
        unsafe { bpf_sk_release(sk as *mut c_void) };
        found
    }

    /// Whether the ACK carries a cookie the listener issued. Cheap unless the
    /// listener recently overflowed (the helper returns at once otherwise).
    #[inline(always)]
    fn cookie_ok(&self, sk: *mut bpf_sock) -> bool {
        let ip_len = if self.v6 { 40 } else { IPV4_HDR };
        let (Ok(ip), Ok(th)) = (
            ptr_at::<[u8; 40]>(self.ctx, self.l3).map(|p| p as *const u8),
            ptr_at::<[u8; TCP_HDR]>(self.ctx, self.l4),
        ) else {
            return false;
        };
        // SAFETY: both headers are bounds-checked above for the sizes passed
        // (40 bytes from the IP header covers IPv4's 20 as well).
        unsafe {
            bpf_tcp_check_syncookie(
                sk as *mut c_void,
                ip as *mut c_void,
                ip_len as u32,
                th as *mut aya_ebpf::bindings::tcphdr,
                TCP_HDR as u32,
            ) == 0
        }
    }

    /// Whether a UDP socket would receive the datagram.
    #[inline(always)]
    pub fn udp_open(&self) -> bool {
        let (mut tuple, size) = self.tuple();
        // SAFETY: as for the TCP look-up.
        let sk = unsafe {
            bpf_sk_lookup_udp(
                self.ctx.ctx as *mut c_void,
                &mut tuple,
                size,
                CURRENT_NETNS,
                0,
            )
        };
        if sk.is_null() {
            return false;
        }
        // SAFETY: releases the reference the look-up took.
        unsafe { bpf_sk_release(sk as *mut c_void) };
        true
    }
}

/// A kernel field at a BTF offset of a socket (0: unknown).
#[inline(always)]
fn field<T>(base: *const u8, offset: &'static u32) -> Option<T> {
    // SAFETY: reading our own read-only global.
    let off = unsafe { core::ptr::read_volatile(offset) };
    if base.is_null() || off == 0 {
        return None;
    }
    // SAFETY: a probing read; a bad address yields an error, not a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T).ok() }
}

/// The request socket's client ISN + 1 is this FIN/RST's sequence: nothing
/// was sent before it.
#[inline(always)]
fn request_empty(sk: *mut bpf_sock, seq: u32) -> bool {
    // SAFETY: a socket the look-up returned and we still hold.
    let req = unsafe { bpf_skc_to_tcp_request_sock(sk as *mut c_void) } as *const u8;
    field::<u32>(req, &TCP_REQ_RCV_ISN).is_some_and(|isn| isn.wrapping_add(1) == seq)
}

/// The established socket has received no byte, and expects this FIN/RST
/// next (no data of the source is in flight before it).
#[inline(always)]
fn established_empty(sk: *mut bpf_sock, seq: u32) -> bool {
    // SAFETY: as above; NULL for a TIME-WAIT socket (not a tcp_sock).
    let tp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as *const u8;
    field::<u64>(tp, &TCP_SOCK_BYTES_RECEIVED) == Some(0)
        && field::<u32>(tp, &TCP_SOCK_RCV_NXT) == Some(seq)
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
