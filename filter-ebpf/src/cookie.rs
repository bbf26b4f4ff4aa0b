//! `syn_cookie` verification, listener-bound route: a SYN from an
//! unverified source to a listening port is answered here, with a SYN-ACK
//! whose sequence number is the listener's own syncookie
//! (`bpf_tcp_gen_syncookie`, which also marks the listener as using
//! cookies so the kernel accepts the ACK), sent back out with XDP_TX. The
//! SYN never reaches the listener's queue; the client's ACK goes up to the
//! kernel, which validates the cookie and creates the connection, and the
//! source is verified. The SYN-ACK carries the MSS only (a connection made
//! through a cookie has no window scaling, SACK or timestamps; a verified
//! source's later SYNs reach the kernel and get all of them).
//!
//! Only plain layouts are answered: no VLAN tag, no IPv4 options, no IPv6
//! extension headers, no data (TCP Fast Open). Anything else passes.
//!
//! This runs as its own program (`challenge`), which the filter enters by
//! tail call once it has decided to challenge a SYN: the cookie helper's
//! header-length dispatch would otherwise multiply the filter's verifier
//! paths past the kernel's budget.

use aya_ebpf::{
    bindings::{bpf_sock, tcphdr},
    helpers::generated::{
        bpf_check_mtu, bpf_tcp_gen_syncookie, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
    },
    macros::xdp,
    programs::XdpContext,
};
use core::ffi::c_void;
use filter_common::{
    cookie::{self, route, Options, Settings, TcpOptions, Tuple, MAX_WSCALE, NO_WSCALE},
    Reason,
};

use crate::{
    clock::Clock,
    conn::listener,
    maps::SYNCOOKIE,
    options,
    parse::{ptr_at, Malformed},
    verify,
};

/// The challenge: answer the plain SYN with a cookie SYN-ACK if a
/// listener is there to take the connection; else let it pass, as the
/// filter would have. Entered for a bare ACK too (from an unverified
/// source, hitting only a listener): on the transparent route, its cookie
/// is checked here.
#[xdp]
pub fn challenge(ctx: XdpContext) -> u32 {
    let reason = try_challenge(&ctx).unwrap_or(Reason::Malformed);
    crate::stats::record(&ctx, reason)
}

/// What the filter parsed, read again: this program starts afresh.
struct Syn {
    v6: bool,
    tuple: Tuple,
    flags: u8,
    /// The ACK's acknowledgement number (0 in a SYN).
    ack: u32,
}

#[inline(always)]
fn read(ctx: &XdpContext) -> Result<Option<Syn>, Malformed> {
    let eth = ptr_at::<[u8; 14]>(ctx, 0)?;
    // SAFETY: bounds-checked.
    let v6 = match unsafe { [(*eth)[12], (*eth)[13]] } {
        [0x86, 0xdd] => true,
        [0x08, 0x00] => false,
        _ => return Ok(None),
    };
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    // The filter checked the layout; read what the look-up needs.
    let ip = ptr_at::<[u8; 40]>(ctx, ETH)?;
    let th = ptr_at::<[u8; 20]>(ctx, l4)?;
    // SAFETY: both bounds-checked.
    let (ip, th) = unsafe { (&*ip, &*th) };
    let (mut saddr, mut daddr) = ([0u8; 16], [0u8; 16]);
    if v6 {
        saddr.copy_from_slice(&ip[8..24]);
        daddr.copy_from_slice(&ip[24..40]);
    } else {
        saddr[..4].copy_from_slice(&ip[12..16]);
        daddr[..4].copy_from_slice(&ip[16..20]);
    }
    Ok(Some(Syn {
        v6,
        tuple: Tuple {
            saddr,
            daddr,
            sport: u16::from_ne_bytes([th[0], th[1]]),
            dport: u16::from_ne_bytes([th[2], th[3]]),
            isn: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        },
        flags: th[13],
        ack: u32::from_be_bytes([th[8], th[9], th[10], th[11]]),
    }))
}

#[inline(always)]
fn try_challenge(ctx: &XdpContext) -> Result<Reason, Malformed> {
    let Some(p) = read(ctx)? else {
        return Ok(Reason::Passed);
    };
    let settings = SYNCOOKIE.get(0);
    let transparent = matches!(settings, Some(s) if s.route == route::KFUNC);
    if p.flags & (SYN | ACK) == ACK {
        // A bare ACK to a listener from an unverified source.
        return Ok(match settings {
            Some(s) if transparent => check_ack(s, &p),
            // The listener's own cookie was checked by the filter: this
            // is a stray ACK, the host answers it.
            _ => Reason::Passed,
        });
    }
    match settings.filter(|_| transparent) {
        Some(s) => answer_own(ctx, s, &p),
        None => answer_listener(ctx, &p),
    }
}

/// Answers the SYN with our own cookie, if a listener would take it.
#[inline(never)]
fn answer_own(ctx: &XdpContext, s: &Settings, p: &Syn) -> Result<Reason, Malformed> {
    if !has_listener(ctx, p) {
        return Ok(Reason::Passed);
    }
    let Some(synack) = own_synack(ctx, s, p, true)? else {
        return Ok(Reason::Passed);
    };
    if synack.full.is_some() && answer::<SYNACK_FULL_TCP>(ctx, p.v6, &synack)? {
        return Ok(Reason::ChallengeSent);
    }
    // No options offered, or no room to grow the frame for them (a short
    // SYN in a tight buffer): the MSS alone, and a cookie that says so.
    let Some(plain) = own_synack(ctx, s, p, false)? else {
        return Ok(Reason::Passed);
    };
    Ok(match answer::<SYNACK_TCP>(ctx, p.v6, &plain)? {
        true => Reason::ChallengeSent,
        false => Reason::Passed,
    })
}

/// Whether a listener would take the SYN. Not inlined (as the functions
/// below): the BPF stack is 512 bytes for the whole call chain, and each
/// of these needs a good part of it for itself.
#[inline(never)]
fn has_listener(ctx: &XdpContext, p: &Syn) -> bool {
    let t = &p.tuple;
    listener(
        ctx,
        p.v6,
        t.saddr,
        t.daddr,
        (t.sport, t.dport),
        |_| Some(()),
    )
    .is_some()
}

/// Answers the SYN with the listener's own cookie (MSS only).
#[inline(never)]
fn answer_listener(ctx: &XdpContext, p: &Syn) -> Result<Reason, Malformed> {
    let t = &p.tuple;
    let ports = (t.sport, t.dport);
    let Some((cookie, mss)) = listener(ctx, p.v6, t.saddr, t.daddr, ports, |sk| {
        generate(ctx, sk, p.v6)
    }) else {
        return Ok(Reason::Passed);
    };
    let synack = Synack {
        cookie,
        mss,
        client_seq: t.isn,
        window: 0xffff,
        full: None,
    };
    Ok(match answer::<SYNACK_TCP>(ctx, p.v6, &synack)? {
        true => Reason::ChallengeSent,
        false => Reason::Passed,
    })
}

/// The ACK of one of our own cookies verifies its source; any other bare
/// ACK to a listener from an unverified source is dropped (under the
/// challenge, such a source never had a SYN reach the listener).
#[inline(never)]
fn check_ack(s: &Settings, p: &Syn) -> Reason {
    let mut clock = Clock::new();
    let mut t = p.tuple;
    t.isn = t.isn.wrapping_sub(1);
    let minute = cookie::minute(clock.now());
    if cookie::decode(s.keys, &t, minute, p.ack.wrapping_sub(1)).is_none() {
        return Reason::ChallengeFailed;
    }
    let cfg = crate::config();
    let key = crate::source_key(p.v6, t.saddr, cfg);
    verify::mark(&key, cfg, &mut clock);
    Reason::Verified
}

/// The SYN-ACK for the SYN with our own cookie and every option the
/// client offered and the host accepts; None for a SYN the host must see
/// (TCP Fast Open, a signed SYN).
#[inline(never)]
fn own_synack(
    ctx: &XdpContext,
    s: &Settings,
    p: &Syn,
    with_options: bool,
) -> Result<Option<Synack>, Malformed> {
    let l4 = if p.v6 { V6_L4 } else { V4_L4 };
    let o = syn_options(ctx, l4)?;
    if o.special {
        // TCP Fast Open or a signed SYN: the host's business.
        return Ok(None);
    }
    let wscale = match s.window_scaling != 0 && with_options {
        false => NO_WSCALE,
        true => o.wscale,
    };
    let sack = o.sack && s.sack != 0 && with_options;
    let ts = o.ts && s.timestamps != 0 && with_options;
    let mut clock = Clock::new();
    let now = clock.now();
    let opts = Options {
        // RFC 9293: without the option, the client takes 536.
        mss: if o.mss == 0 { 536 } else { o.mss },
        wscale,
        sack,
        ecn: false,
    };
    let cookie = cookie::encode(s.keys[0], &p.tuple, cookie::minute(now), opts);
    let mss = our_mss(ctx, p.v6);
    let synack = Synack {
        cookie,
        mss,
        client_seq: p.tuple.isn,
        // Ten segments: never more than the listener's first window.
        window: (mss as u32 * 10).min(0xffff) as u16,
        // Options only if the client offered any (a bare SYN, as flood
        // tools send, gets the short answer: no frame to grow).
        full: (wscale <= MAX_WSCALE || sack || ts).then_some(Full {
            wscale: if wscale <= MAX_WSCALE {
                Some(s.wscale)
            } else {
                None
            },
            sack,
            // Our TSval: milliseconds of the monotonic clock (the kernel
            // takes its offset from the echo in the ACK).
            ts,
            tsval: (now / 1_000_000) as u32,
            tsecr: o.tsval,
        }),
    };
    Ok(Some(synack))
}

/// The MSS we announce: the receiving device's MTU less the headers.
#[inline(always)]
fn our_mss(ctx: &XdpContext, v6: bool) -> u16 {
    let mut mtu = 0u32;
    // SAFETY: our context; `mtu` is an out parameter.
    unsafe { bpf_check_mtu(ctx.ctx as *mut c_void, 0, &mut mtu, 0, 0) };
    let mtu = if mtu < 1280 { 1500 } else { mtu.min(0xffff) };
    let headers = if v6 { 60 } else { 40 };
    (mtu - headers) as u16
}

/// The SYN's TCP options. Not inlined: the option walk's stack would add
/// to the answer's. Reads through `bpf_xdp_load_bytes`, which keeps the
/// context a pointer here (a function given only the packet bounds cannot
/// check them), and with one read of a bounded length, so that the walk
/// starts from one state whatever the header's length.
#[inline(never)]
fn syn_options(ctx: &XdpContext, l4: usize) -> Result<TcpOptions, Malformed> {
    let mut th = [0u8; 20];
    load(ctx, l4, &mut th, 20)?;
    let doff = (th[12] >> 4) as usize;
    if doff < 5 {
        return Err(Malformed);
    }
    // Forgotten and checked again: the verifier loses the lower bound of
    // the arithmetic LLVM makes of this.
    let len = crate::forget(doff * 4 - 20);
    let w = options::scratch().ok_or(Malformed)?;
    if len > 0 {
        // SAFETY: this CPU's slot.
        load(ctx, l4 + 20, unsafe { &mut (*w).buf }, len)?;
    }
    Ok(options::run(w, len))
}

/// Copies `len` bytes at `at` into the start of `buf`.
#[inline(always)]
fn load(ctx: &XdpContext, at: usize, buf: &mut [u8], len: usize) -> Result<(), Malformed> {
    let n = len as u32;
    if len > buf.len() || n == 0 {
        return Err(Malformed);
    }
    // SAFETY: `buf` holds `n` bytes; the helper checks the packet.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, at as u32, buf.as_mut_ptr() as *mut c_void, n) };
    match rc {
        0 => Ok(()),
        _ => Err(Malformed),
    }
}

const ETH: usize = 14;
/// Where the TCP header starts in a plain IPv4 / IPv6 frame.
pub const V4_L4: usize = ETH + 20;
pub const V6_L4: usize = ETH + 40;
/// Our SYN-ACK's TCP header: 20 bytes and the MSS option (listener
/// route), or 20 bytes of options (own cookie).
const SYNACK_TCP: usize = 24;
const SYNACK_FULL_TCP: usize = 40;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const NOP: u8 = 1;

/// The listener's cookie for the SYN at the plain layout: (cookie, MSS).
#[inline(always)]
fn generate(ctx: &XdpContext, sk: *mut bpf_sock, v6: bool) -> Option<(u32, u16)> {
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    let doff = match ptr_at::<[u8; 20]>(ctx, l4) {
        // SAFETY: bounds-checked for 20 bytes.
        Ok(th) => (unsafe { (*th)[12] }) >> 4,
        Err(_) => return None,
    };
    // The helper reads the whole header (options give the MSS) and wants
    // its exact length: one constant-size check per possible length.
    let r = match doff {
        5 => gen_n::<20>(ctx, sk, v6, l4),
        6 => gen_n::<24>(ctx, sk, v6, l4),
        7 => gen_n::<28>(ctx, sk, v6, l4),
        8 => gen_n::<32>(ctx, sk, v6, l4),
        9 => gen_n::<36>(ctx, sk, v6, l4),
        10 => gen_n::<40>(ctx, sk, v6, l4),
        11 => gen_n::<44>(ctx, sk, v6, l4),
        12 => gen_n::<48>(ctx, sk, v6, l4),
        13 => gen_n::<52>(ctx, sk, v6, l4),
        14 => gen_n::<56>(ctx, sk, v6, l4),
        15 => gen_n::<60>(ctx, sk, v6, l4),
        _ => -1,
    };
    if r < 0 {
        return None;
    }
    Some((r as u32, (r >> 32) as u16))
}

#[inline(always)]
fn gen_n<const N: usize>(ctx: &XdpContext, sk: *mut bpf_sock, v6: bool, l4: usize) -> i64 {
    let ip_len = if v6 { 40 } else { 20 };
    let (Ok(ip), Ok(th)) = (ptr_at::<[u8; 40]>(ctx, ETH), ptr_at::<[u8; N]>(ctx, l4)) else {
        return -1;
    };
    // SAFETY: the IP header (40 bytes read covers IPv4's 20: a frame with a
    // TCP header after it is at least that long) and the whole TCP header
    // are bounds-checked above for the sizes passed.
    unsafe {
        bpf_tcp_gen_syncookie(
            sk as *mut c_void,
            ip as *mut c_void,
            ip_len,
            th as *mut tcphdr,
            N as u32,
        )
    }
}

/// A SYN-ACK to write: the MSS option only (the listener route), or
/// with `full` every option the client offered (our own cookie).
struct Synack {
    cookie: u32,
    mss: u16,
    client_seq: u32,
    window: u16,
    full: Option<Full>,
}

struct Full {
    /// The window scale we announce, if the client offered one.
    wscale: Option<u8>,
    sack: bool,
    /// Timestamps, if it offered them: our TSval, and the client's to echo.
    ts: bool,
    tsval: u32,
    tsecr: u32,
}

/// Turns the SYN into its SYN-ACK in place: MACs, addresses and ports
/// swapped, `seq` = the cookie, `ack` = the client's ISN + 1, a `TCP`-byte
/// header with the options, fresh checksums; the frame cut (or grown) to
/// fit. False, with the frame untouched, if it cannot grow that much.
#[inline(always)]
fn answer<const TCP: usize>(ctx: &XdpContext, v6: bool, a: &Synack) -> Result<bool, Malformed> {
    let l4 = if v6 { V6_L4 } else { V4_L4 };
    let len = (ctx.data_end() - ctx.data()) as i32;
    let delta = (l4 + TCP) as i32 - len;
    if delta != 0 {
        // SAFETY: the context is the program's own.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Ok(false);
        }
    }
    if v6 {
        let f = ptr_at::<[u8; V6_L4]>(ctx, 0)? as *mut [u8; V6_L4];
        let t = ptr_at::<[u8; TCP]>(ctx, V6_L4)? as *mut [u8; TCP];
        // SAFETY: bounds-checked; we own the packet.
        let (f, t) = unsafe { (&mut *f, &mut *t) };
        swap_macs(f);
        f[18..20].copy_from_slice(&(TCP as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        for i in 0..16 {
            f.swap(22 + i, 38 + i);
        }
        let pseudo = 6 + TCP as u32 + words(&f[22..54]);
        write_tcp(t, a, pseudo);
    } else {
        let f = ptr_at::<[u8; V4_L4]>(ctx, 0)? as *mut [u8; V4_L4];
        let t = ptr_at::<[u8; TCP]>(ctx, V4_L4)? as *mut [u8; TCP];
        // SAFETY: as above.
        let (f, t) = unsafe { (&mut *f, &mut *t) };
        swap_macs(f);
        let tot = (20 + TCP) as u16;
        f[14] = 0x45;
        f[15] = 0;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[18..22].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
        f[22] = 64;
        f[23] = 6;
        f[24..26].copy_from_slice(&[0, 0]);
        for i in 0..4 {
            f.swap(26 + i, 30 + i);
        }
        let ip_sum = fold(words(&f[14..34]));
        f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let pseudo = 6 + TCP as u32 + words(&f[26..34]);
        write_tcp(t, a, pseudo);
    }
    Ok(true)
}

#[inline(always)]
fn swap_macs(f: &mut [u8]) {
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
}

/// The TCP header of the SYN-ACK; `pseudo` is the pseudo-header's sum.
/// Options: MSS; then, in a full header (40 bytes, as Linux lays them
/// out), SACK-permitted and timestamps, NOP and window scale, each
/// replaced by NOPs when not offered.
#[inline(never)]
fn write_tcp<const TCP: usize>(t: &mut [u8; TCP], a: &Synack, pseudo: u32) {
    for i in 0..2 {
        t.swap(i, 2 + i);
    }
    t[4..8].copy_from_slice(&a.cookie.to_be_bytes());
    t[8..12].copy_from_slice(&a.client_seq.wrapping_add(1).to_be_bytes());
    t[12] = ((TCP / 4) as u8) << 4;
    t[13] = SYN | ACK;
    t[14..16].copy_from_slice(&a.window.to_be_bytes());
    t[16..20].copy_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    let m = a.mss.to_be_bytes();
    t[20..24].copy_from_slice(&[2, 4, m[0], m[1]]);
    if let Some(full) = &a.full {
        if TCP >= SYNACK_FULL_TCP {
            let o = &mut t[24..SYNACK_FULL_TCP];
            o.fill(NOP);
            if full.sack {
                o[0..2].copy_from_slice(&[4, 2]);
            }
            if full.ts {
                o[2..4].copy_from_slice(&[8, 10]);
                o[4..8].copy_from_slice(&full.tsval.to_be_bytes());
                o[8..12].copy_from_slice(&full.tsecr.to_be_bytes());
            }
            if let Some(ws) = full.wscale {
                o[13..16].copy_from_slice(&[3, 3, ws]);
            }
        }
    }
    let sum = fold(pseudo + words(&t[..]));
    t[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// Sum of big-endian 16-bit words (an even number of bytes).
#[inline(always)]
fn words(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i + 1 < b.len() {
        s += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    s
}

/// The one's-complement checksum of a sum of words.
#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}
