//! The XDP filter. Decision order (DESIGN.md, data path contracts):
//! malformed → PASS; not IP → PASS; allowlist → PASS; exact block → DROP;
//! CIDR block → DROP; closed port → DROP; otherwise count per source, then
//! DROP a packet of a class the source is restricted on, or over its rate
//! limit for that class, else PASS. Non-SYN TCP from a tracked (or
//! restricted) source is first looked up among the host's sockets: packets
//! of a connection are counted but never limited or restricted. Every
//! verdict leaves through `stats::record`.
#![no_std]
#![no_main]

mod clock;
mod conn;
mod cookie;
mod lists;
mod maps;
mod options;
pub(crate) use parse::forget;
mod parse;
mod stats;
mod track;
mod verify;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use filter_common::{
    flag, port_mode, Config, RateLimit, Reason, SourceKey, DEFAULT_IPV6_PREFIX, FAMILY_V4,
    FAMILY_V6, PORT_WORDS_UDP,
};

use crate::{
    clock::Clock,
    conn::{Ask, Conn, Sock},
    lists::Listed,
    maps::{
        ALLOW_V4, ALLOW_V6, BLOCK_NET_V4, BLOCK_NET_V6, BLOCK_TRIE_V4, BLOCK_TRIE_V6, BLOCK_V4,
        BLOCK_V6, CONFIG, PORTS,
    },
    parse::{Kind, Malformed, ETH_P_IP, ETH_P_IPV6},
    track::Class,
};

#[xdp]
pub fn filter(ctx: XdpContext) -> u32 {
    let reason = try_filter(&ctx).unwrap_or(Reason::Malformed);
    stats::record(&ctx, reason)
}

/// Addresses of both families in 16 bytes (IPv4 in the first four).
#[inline(always)]
fn widen(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a);
    out
}

#[inline(always)]
fn try_filter(ctx: &XdpContext) -> Result<Reason, Malformed> {
    let (proto, l3) = parse::ethernet(ctx)?;
    // The verifier would otherwise walk everything below once per VLAN
    // depth (three known offsets); one unknown offset is one walk.
    let l3 = forget(l3);
    let mut clock = Clock::new();
    let cfg = config();
    // Full addresses (socket look-ups), the source's identity (counters),
    // and its restriction scope from the block lists.
    let (v6, src, dst, key, scope, l4) = match proto {
        ETH_P_IP => {
            let (src, dst, l4) = parse::ipv4(ctx, l3)?;
            let nets = lists::V4(&BLOCK_NET_V4, &BLOCK_TRIE_V4);
            let scope = match lists::check(&ALLOW_V4, &BLOCK_V4, &nets, src, &mut clock) {
                Listed::Verdict(r) => return Ok(r),
                Listed::Scope(s) => s,
            };
            let src = widen(src);
            (
                false,
                src,
                widen(dst),
                source_key(false, src, cfg),
                scope,
                l4,
            )
        }
        ETH_P_IPV6 => {
            let ip = parse::ipv6(ctx, l3)?;
            let nets = lists::V6(&BLOCK_NET_V6, &BLOCK_TRIE_V6);
            let scope = match lists::check(&ALLOW_V6, &BLOCK_V6, &nets, ip.src, &mut clock) {
                Listed::Verdict(r) => return Ok(r),
                Listed::Scope(s) => s,
            };
            let l4 = parse::ipv6_ext(ctx, &ip)?;
            (
                true,
                ip.src,
                ip.dst,
                source_key(true, ip.src, cfg),
                scope,
                l4,
            )
        }
        _ => return Ok(Reason::NonIp),
    };
    // Every packet from here on is counted at a time: the clock is read
    // now, so that the verifier sees one clock state below, not one per
    // way the look-ups above went.
    clock.now();
    // Likewise one state for "no restriction" and "some restriction".
    let scope = forget(scope as usize) as u32;
    // The TCP ports (wire order) and where the TCP header is, for the
    // socket look-up; the packet's class; and the verdict if nothing drops it.
    let mut tcp = None;
    let mut plain_syn = false;
    let (mut class, reason) = match l4.kind {
        Kind::Tcp => match parse::tcp(ctx, l4.offset, l4.len) {
            Ok(t) => {
                tcp = Some((t.sport, t.dport, t.seq, l4.offset));
                // A SYN the challenge program can answer: no data (TCP
                // Fast Open passes), no VLAN, no IP options or extensions.
                let plain = if v6 { cookie::V6_L4 } else { cookie::V4_L4 };
                plain_syn = t.payload == 0 && l3 == 14 && l4.offset == plain;
                (Class::of(t.flags, t.payload), Reason::Passed)
            }
            // A first fragment too short for the TCP header: the host
            // reassembles it, so it is counted, not passed as malformed.
            Err(_) if l4.first_fragment => (Class::Unparsed, Reason::Passed),
            Err(e) => return Err(e),
        },
        Kind::Udp => {
            let dport = parse::udp_dport(ctx, l4.offset)?;
            let closed = match cfg.udp_ports {
                port_mode::LIST => !port_listed(PORT_WORDS_UDP, dport),
                port_mode::AUTO => {
                    !Conn::new(ctx, v6, src, dst, (0, dport), l3, l4.offset).udp_open()
                }
                _ => false,
            };
            let class = match closed {
                true => Class::Closed {
                    port: u16::from_be(dport),
                },
                false => Class::None,
            };
            (class, Reason::NonTcp)
        }
        Kind::Other => (Class::None, Reason::NonTcp),
        Kind::Fragment => (Class::None, Reason::Fragment),
        Kind::Unparsed => (Class::Unparsed, Reason::Passed),
    };
    let entry = track::entry(&key, cfg, &mut clock);
    // One socket look-up at most, and only where it decides something: a
    // SYN under `ports.tcp: auto`, or a packet a socket could own from a
    // source that is tracked (counted, limited) or restricted.
    let mut sock = Sock::Unknown;
    if let Some((sport, dport, seq, offset)) = tcp {
        // Under `syn_cookie` a bare ACK is checked for a cookie: it
        // verifies its source.
        let wanted = match class {
            Class::Syn => cfg.tcp_ports == port_mode::AUTO,
            Class::Ack { data: false } if verify::cookies(cfg) => true,
            c => c.needs_lookup() && (entry.tracked() || track::restricted_on(c, scope)),
        };
        if wanted {
            let ask = match class {
                Class::Ack { data: false } => Ask::Cookie,
                Class::Fin | Class::Rst => Ask::Empty { seq },
                _ => Ask::Nothing,
            };
            sock = Conn::new(ctx, v6, src, dst, (sport, dport), l3, offset).tcp(ask);
        }
        if class == Class::Syn && tcp_port_closed(cfg, dport, sock) {
            class = Class::Closed {
                port: u16::from_be(dport),
            };
        }
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let verdict = track::account(&key, &entry, class, sock, bytes, scope, cfg, &mut clock);
    track::commit(&key, &entry);
    if let Class::Closed { .. } = class {
        return Ok(Reason::ClosedPort);
    }
    // A SYN nothing else dropped, while verification is on: the source
    // must prove itself first (allowlisted sources never got here).
    if class == Class::Syn && verdict.is_none() {
        verify::count_syn();
        if cfg.verify_active != 0 && !verify::verified(&key, &mut clock) {
            if verify::cookies(cfg) {
                if plain_syn {
                    // Answered there with a cookie SYN-ACK (or passed if no
                    // listener gives one); returns here only if the
                    // program is missing.
                    verify::challenge(ctx);
                }
            } else if let Some(r) = verify::first_syn_drop(&key, cfg, &mut clock) {
                return Ok(r);
            }
        }
    }
    // The ACK of a cookie SYN-ACK: the source has proved itself.
    if sock == Sock::Cookie && verdict.is_none() && verify::cookies(cfg) {
        verify::mark(&key, cfg, &mut clock);
        return Ok(Reason::Verified);
    }
    // A bare ACK to a listener from an unverified source: on the
    // transparent route, it may carry our own cookie (checked there).
    if sock == Sock::Listen
        && class == (Class::Ack { data: false })
        && verdict.is_none()
        && verify::cookies(cfg)
        && !verify::verified(&key, &mut clock)
    {
        verify::challenge(ctx);
    }
    Ok(verdict.unwrap_or(reason))
}

/// Whether a SYN's destination port (wire order) is closed by the policy;
/// `sock` is the look-up's answer under `port_mode::AUTO`.
#[inline(always)]
fn tcp_port_closed(cfg: &Config, dport: u16, sock: Sock) -> bool {
    match cfg.tcp_ports {
        port_mode::LIST => !port_listed(0, dport),
        port_mode::AUTO => sock == Sock::None,
        _ => false,
    }
}

/// The port's bit in the `PORTS` bitmap starting at word `base`.
#[inline(always)]
fn port_listed(base: u32, dport: u16) -> bool {
    let port = u16::from_be(dport) as u32;
    match PORTS.get(base + (port >> 6)) {
        Some(word) => word & (1u64 << (port & 63)) != 0,
        None => false,
    }
}

static DEFAULT_CONFIG: Config = Config {
    ipv6_prefix_len: DEFAULT_IPV6_PREFIX,
    track_min_packets: filter_common::DEFAULT_TRACK_MIN_PACKETS,
    limits: [RateLimit { rate: 0, burst: 0 }; flag::COUNT],
    tcp_ports: port_mode::OFF,
    udp_ports: port_mode::OFF,
    scan_ports: 0,
    verify_mode: filter_common::verify_mode::OFF,
    verify_active: 0,
    retry_min_ms: 0,
    retry_max_ms: 0,
    verified_ttl_s: 0,
    window_ns: 0,
    trigger: [0; filter_common::window::METRICS],
};

#[inline(always)]
pub(crate) fn config() -> &'static Config {
    CONFIG.get(0).unwrap_or(&DEFAULT_CONFIG)
}

/// A source's identity in the counters and the verified set: the IPv4
/// address (first four bytes of `src`), or the IPv6 address cut to the
/// policy's prefix.
#[inline(always)]
pub(crate) fn source_key(v6: bool, src: [u8; 16], cfg: &Config) -> SourceKey {
    match v6 {
        false => SourceKey {
            family: FAMILY_V4,
            addr: src,
        },
        true => SourceKey {
            family: FAMILY_V6,
            addr: mask_v6(src, cfg.ipv6_prefix_len),
        },
    }
}

/// Keeps the first `prefix` bits of an IPv6 address (0 means the default).
#[inline(always)]
fn mask_v6(addr: [u8; 16], prefix: u32) -> [u8; 16] {
    let prefix = match prefix {
        0 => DEFAULT_IPV6_PREFIX,
        p if p > 128 => 128,
        p => p,
    };
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let hi_mask = if prefix >= 64 {
        u64::MAX
    } else {
        !(u64::MAX >> prefix)
    };
    let lo_mask = match prefix {
        0..=64 => 0,
        128.. => u64::MAX,
        p => !(u64::MAX >> (p - 64)),
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(hi & hi_mask).to_be_bytes());
    out[8..].copy_from_slice(&(lo & lo_mask).to_be_bytes());
    out
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
