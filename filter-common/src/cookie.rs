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

/// 24 bits of keyed hash over the tuple and the minute.
#[inline(always)]
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
