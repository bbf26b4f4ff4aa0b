//! The filter's own SYN-cookie format, for the transparent route (XDP
//! answers, a TC program hands the ACK to the listener with
//! `bpf_sk_assign_tcp_reqsk`, where the kernel takes the connection's
//! options from us instead of from its own cookie). Pure functions, shared
//! by the XDP and TC programs and unit-tested here.
//!
//! The cookie is the SYN-ACK's sequence number (the client returns it + 1
//! in its ACK):
//!
//! ```text
//!  31                     8 7   6 5       2  1    0
//! +------------------------+-----+---------+----+---+
//! | hash (24 bits)         | MSS | wscale  |SACK|ECN|
//! +------------------------+-----+---------+----+---+
//! ```
//!
//! `hash` is SipHash-1-3, under a secret key, of the 4-tuple, the client's
//! ISN and the minute; a cookie is valid in its minute and the next (one
//! to two minutes, as the kernel's), and the key may be rotated with the
//! previous one still accepted. `wscale` 15 means the client offered none.

use crate::siphash13_16;

/// MSS values a cookie can carry (IPv4 and IPv6 alike: the kernel's IPv6
/// table starts at 1220, which the IPv4 1300 covers as well as it can).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// `wscale` value meaning "no window scaling".
pub const NO_WSCALE: u8 = 15;
/// Largest window scale TCP allows.
pub const MAX_WSCALE: u8 = 14;

/// Values of [`Settings::route`]: how a cookie SYN-ACK's connection
/// reaches the listener.
pub mod route {
    /// The listener's own cookie (`bpf_tcp_gen_syncookie`); the kernel
    /// validates the ACK. MSS only: no window scaling, SACK or timestamps.
    pub const LISTENER: u32 = 0;
    /// Our own cookie, all options; the TC program hands the validated ACK
    /// to the listener (`bpf_sk_assign_tcp_reqsk`).
    pub const KFUNC: u32 = 1;
}

/// The `SYNCOOKIE` map's one value, written by the controller: the route,
/// the keys of our own cookie format (current, then previous: a cookie
/// made just before a rotation stays valid) and what the host's TCP
/// accepts, so that the SYN-ACK offers only options the listener will
/// take.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub keys: [[u64; 2]; 2],
    /// [`route`].
    pub route: u32,
    /// The window scale our SYN-ACK announces: the one the kernel would
    /// choose for the listener (`tcp_select_initial_window`).
    pub wscale: u8,
    /// Host sysctls: `tcp_timestamps`, `tcp_sack`, `tcp_window_scaling`
    /// (1 = on).
    pub timestamps: u8,
    pub sack: u8,
    pub window_scaling: u8,
}

/// The coarse clock of the cookie format, from CLOCK_MONOTONIC ns: about
/// 68.7 s a step.
#[inline(always)]
pub fn minute(now_ns: u64) -> u32 {
    (now_ns >> 36) as u32
}

/// What a SYN (or an ACK) says in its TCP options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// MSS, 0 if absent.
    pub mss: u16,
    /// Window scale, [`NO_WSCALE`] if absent.
    pub wscale: u8,
    pub sack: bool,
    /// The timestamp option is present, with these values. (Plain fields,
    /// not an `Option`: BPF code that moves an `Option` copies its
    /// undefined payload, which the verifier refuses.)
    pub ts: bool,
    pub tsval: u32,
    pub tsecr: u32,
    /// TCP Fast Open, MD5 or AO signature, or a malformed option list: not
    /// a SYN to answer with a cookie.
    pub special: bool,
}

/// Longest TCP option area.
pub const OPTIONS_MAX: usize = 40;

/// Reads the first `len` bytes of `opts`, a TCP header's option area
/// (bytes past `len` are ignored).
pub fn parse_options(opts: &[u8; OPTIONS_MAX], len: usize) -> TcpOptions {
    let mut w = OptionWalk {
        buf: *opts,
        ..OptionWalk::default()
    };
    w.start(len);
    w.walk();
    w.options()
}

/// Options (NOP runs count one each) read before giving up: real stacks
/// send at most eight (macOS: MSS, NOP, WS, NOP, NOP, TS, SACK, EOL). A
/// SYN with more is treated as special (the host answers it). Kept small:
/// the verifier checks the walk once per step.
pub const OPTION_STEPS: usize = 10;

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions::new()
    }
}

impl TcpOptions {
    /// Nothing seen yet.
    pub const fn new() -> TcpOptions {
        TcpOptions {
            mss: 0,
            wscale: NO_WSCALE,
            sack: false,
            ts: false,
            tsval: 0,
            tsecr: 0,
            special: false,
        }
    }

    /// (TSval, TSecr), if present.
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.ts.then_some((self.tsval, self.tsecr))
    }
}

/// Reads the option at `i` into `out`; returns where the next one starts,
/// or None at the end of the list. Every index is checked.
#[inline(always)]
pub fn option_step(
    opts: &[u8; OPTIONS_MAX],
    len: usize,
    i: usize,
    out: &mut TcpOptions,
) -> Option<usize> {
    let len = if len > OPTIONS_MAX { OPTIONS_MAX } else { len };
    if i >= len {
        return None;
    }
    let kind = *opts.get(i)?;
    match kind {
        0 => return None,
        1 => return Some(i + 1),
        _ => {}
    }
    let size = match opts.get(i + 1) {
        Some(&s) if i + 1 < len => s as usize,
        _ => 0,
    };
    if size < 2 || i + size > len {
        out.special = true;
        return None;
    }
    match (kind, size) {
        (2, 4) => {
            if let Some(&[a, b]) = opts.get(i + 2..i + 4) {
                out.mss = u16::from_be_bytes([a, b]);
            }
        }
        (3, 3) => {
            if let Some(&w) = opts.get(i + 2) {
                out.wscale = w;
            }
        }
        (4, 2) => out.sack = true,
        (8, 10) => {
            if let Some(&[a, b, c, d, e, f, g, h]) = opts.get(i + 2..i + 10) {
                out.ts = true;
                out.tsval = u32::from_be_bytes([a, b, c, d]);
                out.tsecr = u32::from_be_bytes([e, f, g, h]);
            }
        }
        // MD5 signature, TCP-AO, Fast Open (and its experimental kind).
        (19, _) | (29, _) | (34, _) | (254, _) => out.special = true,
        _ => {}
    }
    Some(i + size)
}

/// The option walk's state in the BPF programs, kept in a per-CPU map
/// value rather than on the stack: the verifier tracks no map contents, so
/// the walk's loop (`bpf_loop`) reaches the same state at every step and is
/// verified once, not once per combination of options seen so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionWalk {
    pub buf: [u8; OPTIONS_MAX],
    pub len: u32,
    pub at: u32,
    pub tsval: u32,
    pub tsecr: u32,
    pub mss: u16,
    pub wscale: u8,
    /// [`walk_flag`] bits.
    pub flags: u8,
}

/// Bits of [`OptionWalk::flags`].
pub mod walk_flag {
    pub const SACK: u8 = 1;
    pub const TS: u8 = 2;
    pub const SPECIAL: u8 = 4;
}

impl Default for OptionWalk {
    fn default() -> Self {
        OptionWalk {
            buf: [0; OPTIONS_MAX],
            len: 0,
            at: 0,
            tsval: 0,
            tsecr: 0,
            mss: 0,
            wscale: NO_WSCALE,
            flags: 0,
        }
    }
}

impl OptionWalk {
    /// Starts a walk over the first `len` bytes of `buf`.
    #[inline(always)]
    pub fn start(&mut self, len: usize) {
        self.len = len as u32;
        self.at = 0;
        self.tsval = 0;
        self.tsecr = 0;
        self.mss = 0;
        self.wscale = NO_WSCALE;
        self.flags = 0;
    }

    /// What the walk found so far.
    #[inline(always)]
    pub fn options(&self) -> TcpOptions {
        TcpOptions {
            mss: self.mss,
            wscale: self.wscale,
            sack: self.flags & walk_flag::SACK != 0,
            ts: self.flags & walk_flag::TS != 0,
            tsval: self.tsval,
            tsecr: self.tsecr,
            special: self.flags & walk_flag::SPECIAL != 0,
        }
    }

    /// Reads the options, [`OPTION_STEPS`] at most; more is special.
    #[inline(always)]
    pub fn walk(&mut self) {
        for _ in 0..OPTION_STEPS {
            if !self.step() {
                return;
            }
        }
        if (self.at as usize) < (self.len as usize) && self.buf.get(self.at as usize) != Some(&0) {
            self.flags |= walk_flag::SPECIAL;
        }
    }

    /// Reads one option; false at the end of the list.
    #[inline(always)]
    pub fn step(&mut self) -> bool {
        let mut o = self.options();
        let at = (self.at & 0x3f) as usize;
        let next = option_step(&self.buf, self.len as usize, at, &mut o);
        self.mss = o.mss;
        self.wscale = o.wscale;
        (self.tsval, self.tsecr) = (o.tsval, o.tsecr);
        self.flags = (o.sack as u8 * walk_flag::SACK)
            | (o.ts as u8 * walk_flag::TS)
            | (o.special as u8 * walk_flag::SPECIAL);
        match next {
            Some(n) => {
                self.at = n as u32;
                true
            }
            None => false,
        }
    }
}

/// The connection a cookie is for, as the client sent its SYN: addresses
/// (IPv4 in the first four bytes), ports as on the wire, its ISN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub isn: u32,
}

/// The options a cookie remembers of the client's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The client's MSS, rounded down to [`MSS_TABLE`] when encoded.
    pub mss: u16,
    /// The client's window scale, or [`NO_WSCALE`].
    pub wscale: u8,
    pub sack: bool,
    pub ecn: bool,
}

#[inline(always)]
fn word(b: &[u8; 16], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// 24 bits of keyed hash over the tuple and the minute. Not inlined: in
/// BPF each copy would take its own stack, and `decode` makes four.
#[inline(never)]
fn hash(key: [u64; 2], t: &Tuple, minute: u32) -> u32 {
    // The addresses fold into the key (32 bytes do not fit one call);
    // ports, ISN and minute are the message.
    let k = [
        key[0] ^ word(&t.saddr, 0) ^ word(&t.daddr, 8).rotate_left(17),
        key[1] ^ word(&t.saddr, 8) ^ word(&t.daddr, 0).rotate_left(31),
    ];
    let m0 = (t.sport as u64) << 48 | (t.dport as u64) << 32 | t.isn as u64;
    let h = siphash13_16(k, [m0, minute as u64]);
    (h as u32 ^ (h >> 32) as u32) >> 8
}

/// The index of the largest table MSS not above `mss` (0 if below all).
#[inline(always)]
fn mss_index(mss: u16) -> u32 {
    let mut i = 0;
    let mut n = 0;
    while n < MSS_TABLE.len() {
        if MSS_TABLE[n] <= mss {
            i = n as u32;
        }
        n += 1;
    }
    i
}

/// The cookie for `t` with `opts`, in `minute` (a coarse clock both sides
/// share: `ktime_ns >> 36` is about 68.7 s).
#[inline(always)]
pub fn encode(key: [u64; 2], t: &Tuple, minute: u32, opts: Options) -> u32 {
    let wscale = if opts.wscale > MAX_WSCALE {
        NO_WSCALE
    } else {
        opts.wscale
    } as u32;
    hash(key, t, minute) << 8
        | mss_index(opts.mss) << 6
        | wscale << 2
        | (opts.sack as u32) << 1
        | opts.ecn as u32
}

/// The options `cookie` carries if it is valid for `t` in `minute` or the
/// one before, under one of `keys` (the current key, then the previous).
#[inline(always)]
pub fn decode(keys: [[u64; 2]; 2], t: &Tuple, minute: u32, cookie: u32) -> Option<Options> {
    let h = cookie >> 8;
    let mut valid = false;
    for key in keys {
        if h == hash(key, t, minute) || h == hash(key, t, minute.wrapping_sub(1)) {
            valid = true;
        }
    }
    if !valid {
        return None;
    }
    Some(Options {
        mss: MSS_TABLE[((cookie >> 6) & 3) as usize],
        wscale: ((cookie >> 2) & 0xf) as u8,
        sack: cookie & 2 != 0,
        ecn: cookie & 1 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
    const OLD: [u64; 2] = [7, 9];

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    fn tuple() -> Tuple {
        Tuple {
            saddr: v4([198, 51, 100, 7]),
            daddr: v4([192, 0, 2, 1]),
            sport: 40000u16.to_be(),
            dport: 443u16.to_be(),
            isn: 0x1234_5678,
        }
    }

    fn opts(bytes: &[u8]) -> TcpOptions {
        let mut buf = [0u8; OPTIONS_MAX];
        buf[..bytes.len()].copy_from_slice(bytes);
        parse_options(&buf, bytes.len())
    }

    #[test]
    fn options_of_a_linux_syn() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
        let o = opts(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(
            o,
            TcpOptions {
                mss: 1460,
                wscale: 7,
                sack: true,
                ts: true,
                tsval: 0x1234,
                tsecr: 0,
                special: false
            }
        );
        // An ACK: NOP NOP timestamps.
        let o = opts(&[1, 1, 8, 10, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(o.timestamps(), Some((9, 0xdead_beef)));
        assert_eq!((o.mss, o.wscale, o.sack), (0, NO_WSCALE, false));
        // None at all.
        assert_eq!(opts(&[]).wscale, NO_WSCALE);
    }

    #[test]
    fn the_step_by_step_walk_finds_what_the_parser_finds() {
        let bytes = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 7, 1, 3, 3, 7,
        ];
        let mut w = OptionWalk::default();
        w.buf[..bytes.len()].copy_from_slice(&bytes);
        w.start(bytes.len());
        let mut steps = 0;
        while w.step() {
            steps += 1;
        }
        assert_eq!(steps, 5, "MSS, SACK, TS, NOP, WS");
        assert_eq!(w.options(), opts(&bytes));
        assert_eq!(w.options().timestamps(), Some((0x1234, 7)));
    }

    #[test]
    fn fast_open_signatures_and_garbage_are_special() {
        for bytes in [
            &[2, 4, 5, 0xb4, 34, 10, 1, 2, 3, 4, 5, 6, 7, 8][..], // TFO cookie
            &[34, 2][..],                                         // TFO request
            &[19, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], // MD5
            &[29, 4, 0, 0][..],                                   // TCP-AO
            &[2, 4, 5][..],                                       // cut short
            &[2, 0, 5, 0xb4][..],                                 // zero length
            &[2, 40, 5, 0xb4][..],                                // runs past the end
        ] {
            assert!(opts(bytes).special, "{bytes:?}");
        }
        // Bytes past the header's length are not read.
        let mut buf = [0u8; OPTIONS_MAX];
        buf[..4].copy_from_slice(&[1, 1, 1, 1]);
        buf[4..8].copy_from_slice(&[2, 4, 5, 0xb4]);
        assert_eq!(parse_options(&buf, 4).mss, 0);
        // More options than a real stack sends: not answered.
        assert!(opts(&[1; 12]).special);
        assert!(!opts(&[1; 9]).special);
        // Unknown options are skipped by their length.
        assert_eq!(opts(&[99, 4, 0, 0, 2, 4, 5, 0xb4]).mss, 1460);
    }

    #[test]
    fn every_option_survives_the_round_trip() {
        let t = tuple();
        for (mss, want) in [
            (1460, 1460),
            (1500, 1460),
            (1440, 1440),
            (1400, 1300),
            (600, 536),
            (100, 536),
        ] {
            for wscale in [0, 7, 14, NO_WSCALE] {
                for (sack, ecn) in [(false, false), (true, false), (false, true), (true, true)] {
                    let opts = Options {
                        mss,
                        wscale,
                        sack,
                        ecn,
                    };
                    let c = encode(KEY, &t, 1000, opts);
                    let got = decode([KEY, OLD], &t, 1000, c).expect("valid cookie");
                    assert_eq!(got, Options { mss: want, ..opts }, "{opts:?}");
                }
            }
        }
        // A window scale beyond 14 is not a window scale.
        let c = encode(
            KEY,
            &t,
            5,
            Options {
                mss: 1460,
                wscale: 20,
                sack: false,
                ecn: false,
            },
        );
        assert_eq!(decode([KEY, OLD], &t, 5, c).unwrap().wscale, NO_WSCALE);
    }

    #[test]
    fn valid_for_its_minute_and_the_next_only() {
        let t = tuple();
        let opts = Options {
            mss: 1460,
            wscale: 7,
            sack: true,
            ecn: false,
        };
        let c = encode(KEY, &t, 1000, opts);
        assert!(decode([KEY, OLD], &t, 1000, c).is_some());
        assert!(decode([KEY, OLD], &t, 1001, c).is_some());
        assert!(decode([KEY, OLD], &t, 1002, c).is_none(), "expired");
        assert!(decode([KEY, OLD], &t, 999, c).is_none(), "from the future");
    }

    #[test]
    fn another_tuple_key_or_forged_bits_do_not_verify() {
        let t = tuple();
        let opts = Options {
            mss: 1460,
            wscale: 7,
            sack: true,
            ecn: false,
        };
        let c = encode(KEY, &t, 42, opts);
        // Any other client, port, ISN or server.
        let others = [
            Tuple {
                saddr: v4([198, 51, 100, 8]),
                ..t
            },
            Tuple {
                daddr: v4([192, 0, 2, 2]),
                ..t
            },
            Tuple {
                sport: 40001u16.to_be(),
                ..t
            },
            Tuple {
                dport: 80u16.to_be(),
                ..t
            },
            Tuple {
                isn: t.isn + 1,
                ..t
            },
        ];
        for o in others {
            assert!(decode([KEY, OLD], &o, 42, c).is_none(), "{o:?}");
        }
        // Keys: the previous key still verifies; an unknown one does not.
        let by_old = encode(OLD, &t, 42, opts);
        assert!(decode([KEY, OLD], &t, 42, by_old).is_some());
        assert!(decode([KEY, [1, 2]], &t, 42, by_old).is_none());
        // Flipping any hash bit is caught; the option bits are not hashed
        // (they only describe the client's SYN), so a forger gains nothing
        // from them without a valid hash.
        for bit in 8..32 {
            assert!(
                decode([KEY, OLD], &t, 42, c ^ (1 << bit)).is_none(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn ipv6_tuples_use_all_their_bytes() {
        let mut a = tuple();
        a.saddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        a.daddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let opts = Options {
            mss: 1440,
            wscale: 9,
            sack: true,
            ecn: true,
        };
        let c = encode(KEY, &a, 7, opts);
        assert!(decode([KEY, OLD], &a, 7, c).is_some());
        // A difference in the low half of the source address is caught.
        let mut b = a;
        b.saddr[15] = 3;
        assert!(decode([KEY, OLD], &b, 7, c).is_none());
        let mut b = a;
        b.daddr[3] = 0xb9;
        assert!(decode([KEY, OLD], &b, 7, c).is_none());
    }
}
