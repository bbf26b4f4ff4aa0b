//! The XDP filter. Decision order (DESIGN.md, data path contracts):
//! malformed → PASS; not IP → PASS; allowlist → PASS; exact block → DROP;
//! CIDR block → DROP; otherwise count per source, then DROP if the source is
//! over its rate limit for the packet's flag class, else PASS. Every verdict
//! leaves through `stats::record`.
#![no_std]
#![no_main]

mod clock;
mod lists;
mod maps;
mod parse;
mod stats;
mod track;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use filter_common::{
    flag, Config, RateLimit, Reason, SourceKey, DEFAULT_IPV6_PREFIX, FAMILY_V4, FAMILY_V6,
};

use crate::{
    clock::Clock,
    maps::{ALLOW_V4, ALLOW_V6, BLOCK_NET_V4, BLOCK_NET_V6, BLOCK_V4, BLOCK_V6, CONFIG},
    parse::{Malformed, ETH_P_IP, ETH_P_IPV6, L4},
    track::Class,
};

#[xdp]
pub fn filter(ctx: XdpContext) -> u32 {
    let reason = try_filter(&ctx).unwrap_or(Reason::Malformed);
    stats::record(&ctx, reason)
}

#[inline(always)]
fn try_filter(ctx: &XdpContext) -> Result<Reason, Malformed> {
    let (proto, l3) = parse::ethernet(ctx)?;
    let mut clock = Clock::new();
    // The source's full address (flows) and its identity (counters).
    let (full, key, l4) = match proto {
        ETH_P_IP => {
            let (src, l4) = parse::ipv4(ctx, l3)?;
            if let Some(r) = lists::check(&ALLOW_V4, &BLOCK_V4, &BLOCK_NET_V4, src, &mut clock) {
                return Ok(r);
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&src);
            let key = SourceKey {
                family: FAMILY_V4,
                addr,
            };
            (addr, key, l4)
        }
        ETH_P_IPV6 => {
            let (src, next, off, payload_len) = parse::ipv6(ctx, l3)?;
            if let Some(r) = lists::check(&ALLOW_V6, &BLOCK_V6, &BLOCK_NET_V6, src, &mut clock) {
                return Ok(r);
            }
            let l4 = parse::ipv6_ext(ctx, next, off, payload_len)?;
            let key = SourceKey {
                family: FAMILY_V6,
                addr: mask_v6(src, config().ipv6_prefix_len),
            };
            (src, key, l4)
        }
        _ => return Ok(Reason::NonIp),
    };
    let (class, reason, ports) = match l4 {
        L4::Tcp { offset, len } => {
            let t = parse::tcp(ctx, offset, len)?;
            (
                Class::of(t.flags, t.payload),
                Reason::Passed,
                Some((t.sport, t.dport)),
            )
        }
        L4::Other => (Class::None, Reason::NonTcp, None),
        L4::Fragment => (Class::None, Reason::Fragment, None),
    };
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let flow = track::Flow { addr: &full, ports };
    if track::count(&key, class, bytes, &flow, config(), &mut clock) {
        return Ok(Reason::RateLimited);
    }
    Ok(reason)
}

static DEFAULT_CONFIG: Config = Config {
    ipv6_prefix_len: DEFAULT_IPV6_PREFIX,
    track_min_packets: filter_common::DEFAULT_TRACK_MIN_PACKETS,
    limits: [RateLimit { rate: 0, burst: 0 }; flag::COUNT],
    _reserved: [0; 6],
};

#[inline(always)]
fn config() -> &'static Config {
    CONFIG.get(0).unwrap_or(&DEFAULT_CONFIG)
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
