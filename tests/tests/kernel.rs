//! Kernel tier: the real filter object, loaded into this kernel and run
//! through BPF_PROG_TEST_RUN on crafted frames. Each test asserts the
//! verdict and what the program wrote to its maps.

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use filter_common::{list_reason, Config, Reason, SourceCounters};
use filter_ctl::{
    kernel::{
        loader,
        maps::{new_entry, ListKind},
    },
    model::{addr::parse_net, clock},
};
use filter_tests::{
    kernel::{Filter, DROP, PASS},
    packet::{
        self, Packet, ACK, AH, DSTOPTS, FIN, FRAGMENT, HOPOPTS, PROTO_UDP, PSH, ROUTING, RST, SYN,
    },
    require_root,
};

/// (flags, payload, which counter must be 1) for every class.
fn flag_cases() -> Vec<(u8, usize, &'static str)> {
    vec![
        (SYN, 0, "syn"),
        (SYN | ACK, 0, "syn_ack"),
        (ACK, 0, "ack"),
        (RST, 0, "rst"),
        (RST | ACK, 0, "rst"),
        (FIN | ACK, 0, "fin"),
        (FIN, 0, "fin"),
        // An ACK with payload is still an ACK: stray unless a socket owns it.
        (ACK | PSH, 100, "ack"),
        (ACK, 1, "ack"),
        // No flag at all: nothing the stack accepts, counted with ACKs.
        (0, 0, "ack"),
    ]
}

fn flag_vector(c: &SourceCounters) -> [(&'static str, u64); 6] {
    [
        ("syn", c.syn),
        ("syn_ack", c.syn_ack),
        ("ack", c.ack),
        ("rst", c.rst),
        ("fin", c.fin),
        ("unparsed", c.unparsed),
    ]
}

fn check_flags_counted_once(source: impl Fn(usize) -> String) {
    let mut f = Filter::new();
    for (i, (flags, payload, field)) in flag_cases().into_iter().enumerate() {
        // One source per case so each starts from zero.
        let src = source(i + 1);
        let frame = Packet::tcp(&src, flags)
            .with(|p| p.payload = payload)
            .build();
        assert_eq!(f.run(&frame), PASS);
        assert_eq!(f.run(&frame), PASS);
        let c = f
            .counters(&src)
            .unwrap_or_else(|| panic!("{src} not tracked"));
        for (name, value) in flag_vector(&c) {
            let want = if name == field { 2 } else { 0 };
            assert_eq!(
                value, want,
                "flags {flags:#04x} payload {payload}: counter {name}"
            );
        }
        assert_eq!(c.packets, 2, "{src}");
        // No socket here owns these packets: all stray.
        assert_eq!(c.in_conn, 0, "{src}");
        assert_eq!(c.bytes, 2 * frame.len() as u64, "{src}");
        assert!(c.first_seen_ns > 0 && c.last_seen_ns >= c.first_seen_ns);
    }
    let n = flag_cases().len() as u64 * 2;
    assert_eq!(f.stat(Reason::Passed).packets, n);
}

#[test]
fn ipv4_each_flag_counted_exactly_once() {
    check_flags_counted_once(|i| format!("198.51.100.{i}"));
}

#[test]
fn ipv6_each_flag_counted_exactly_once() {
    // Different /64s so the cases do not share a source.
    check_flags_counted_once(|i| format!("2001:db8:0:{i}::1"));
}

#[test]
fn counters_timestamps_follow_the_monotonic_clock() {
    let mut f = Filter::new();
    let before = clock::monotonic_ns();
    f.run(&Packet::tcp("198.51.100.1", SYN).build());
    std::thread::sleep(Duration::from_millis(20));
    f.run(&Packet::tcp("198.51.100.1", ACK).build());
    let after = clock::monotonic_ns();
    let c = f.counters("198.51.100.1").unwrap();
    assert!(before <= c.first_seen_ns && c.last_seen_ns <= after);
    assert!(c.last_seen_ns - c.first_seen_ns >= 20_000_000, "{c:?}");
}

#[test]
fn vlan_and_double_vlan_are_parsed() {
    let mut f = Filter::new();
    let cases = [
        ("198.51.100.10", vec![packet::TPID_8021Q]),
        (
            "198.51.100.11",
            vec![packet::TPID_8021AD, packet::TPID_8021Q],
        ),
        (
            "2001:db8:1::1",
            vec![packet::TPID_8021Q, packet::TPID_8021Q],
        ),
    ];
    for (src, vlans) in cases {
        let frame = Packet::tcp(src, SYN)
            .with(|p| p.vlans = vlans.clone())
            .build();
        assert_eq!(f.run(&frame), PASS);
        assert_eq!(f.counters(src).map(|c| c.syn), Some(1), "{src} {vlans:x?}");
    }
    // Three tags is beyond VLAN_MAX_DEPTH: the inner type is a TPID, not IP.
    let frame = Packet::tcp("198.51.100.12", SYN)
        .with(|p| p.vlans = vec![packet::TPID_8021AD, packet::TPID_8021Q, packet::TPID_8021Q])
        .build();
    assert_eq!(f.run(&frame), PASS);
    assert_eq!(f.stat(Reason::NonIp).packets, 1);
    assert!(f.counters("198.51.100.12").is_none());
}

#[test]
fn vlan_tagged_blocked_source_is_dropped() {
    let mut f = Filter::new();
    f.block("198.51.100.20", None);
    let frame = Packet::tcp("198.51.100.20", SYN)
        .with(|p| p.vlans = vec![packet::TPID_8021AD, packet::TPID_8021Q])
        .build();
    assert_eq!(f.run(&frame), DROP);
}

#[test]
fn ipv4_options_are_skipped() {
    let mut f = Filter::new();
    for (i, opts) in [4usize, 12, 40].into_iter().enumerate() {
        let src = format!("198.51.100.{}", 30 + i);
        let frame = Packet::tcp(&src, SYN | ACK)
            .with(|p| p.ipv4_options = opts)
            .build();
        assert_eq!(f.run(&frame), PASS);
        assert_eq!(
            f.counters(&src).map(|c| c.syn_ack),
            Some(1),
            "{opts} option bytes"
        );
    }
}

#[test]
fn ipv4_fragments_of_tcp_are_counted_and_limited_as_unparsed() {
    filter_tests::pin_to_cpu(0);
    let mut limits = [filter_common::RateLimit::default(); filter_common::flag::COUNT];
    limits[filter_common::flag::UNPARSED] = filter_common::RateLimit { rate: 1, burst: 3 };
    let mut f = Filter::with_config(Config {
        track_min_packets: 1,
        limits,
        ..Config::default()
    });
    // A first fragment that holds the whole TCP header is classified.
    let first = Packet::tcp("198.51.100.40", SYN)
        .with(|p| p.more_fragments = true)
        .build();
    assert_eq!(f.run(&first), PASS);
    let c = f.counters("198.51.100.40").unwrap();
    assert_eq!((c.syn, c.unparsed), (1, 0));
    // A tiny first fragment (8 bytes of TCP: ports and sequence, no flags)
    // and a later fragment cannot be classified, but the host reassembles
    // them: counted per source as unparsed, and limited, never passed as
    // malformed or uncounted.
    let tiny = Packet::tcp("198.51.100.41", SYN)
        .with(|p| {
            p.more_fragments = true;
            p.l4_truncate = Some(8);
        })
        .build();
    let later = Packet::tcp("198.51.100.41", SYN)
        .with(|p| {
            p.frag_offset = 1;
            p.l4_truncate = Some(12);
        })
        .build();
    let verdicts: Vec<u32> = (0..4).flat_map(|_| [f.run(&tiny), f.run(&later)]).collect();
    assert_eq!(&verdicts[..3], &[PASS; 3]);
    assert_eq!(&verdicts[3..], &[DROP; 5]);
    let c = f.counters("198.51.100.41").unwrap();
    assert_eq!((c.syn, c.unparsed, c.limited), (0, 8, 5));
    assert_eq!(f.stat(Reason::Malformed).packets, 0);
    assert_eq!(f.stat(Reason::Fragment).packets, 0);
    // A later fragment of UDP is not ours to judge: passed as a fragment.
    let udp = Packet::tcp("198.51.100.42", 0)
        .with(|p| {
            p.proto = PROTO_UDP;
            p.frag_offset = 185;
        })
        .build();
    assert_eq!(f.run(&udp), PASS);
    assert_eq!(f.stat(Reason::Fragment).packets, 1);
    assert_eq!(f.counters("198.51.100.42").unwrap().unparsed, 0);
    // A blocked source's fragments are dropped too.
    f.block("198.51.100.41", None);
    assert_eq!(f.run(&later), DROP);
    assert_eq!(f.stat(Reason::BlockedExact).packets, 1);
}

#[test]
fn ipv6_extension_chains_are_walked() {
    let mut f = Filter::new();
    let chains: [&[u8]; 5] = [
        &[HOPOPTS],
        &[HOPOPTS, ROUTING, DSTOPTS],
        &[FRAGMENT],
        &[HOPOPTS, AH, DSTOPTS],
        // exactly the bound (IPV6_EXT_MAX_CHAIN)
        &[
            HOPOPTS, ROUTING, FRAGMENT, AH, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS,
        ],
    ];
    for (i, chain) in chains.iter().enumerate() {
        let src = format!("2001:db8:2:{i}::1");
        let frame = Packet::tcp(&src, RST)
            .with(|p| p.ipv6_ext = chain.to_vec())
            .build();
        assert_eq!(f.run(&frame), PASS);
        assert_eq!(f.counters(&src).map(|c| c.rst), Some(1), "chain {chain:?}");
    }
    // One more than the bound: Linux would walk it, we do not guess where
    // TCP starts, so it is counted as unparsed (and limited), not passed as
    // malformed.
    let long = Packet::tcp("2001:db8:2:9::1", RST)
        .with(|p| {
            p.ipv6_ext = vec![
                HOPOPTS, ROUTING, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS, DSTOPTS,
            ]
        })
        .build();
    assert_eq!(f.run(&long), PASS);
    assert_eq!(f.stat(Reason::Malformed).packets, 0);
    let c = f.counters("2001:db8:2:9::1").unwrap();
    assert_eq!((c.rst, c.unparsed), (0, 1));
    // A later IPv6 fragment of TCP: unparsed too.
    let later = Packet::tcp("2001:db8:2:a::1", SYN)
        .with(|p| {
            p.ipv6_ext = vec![HOPOPTS, FRAGMENT];
            p.frag_offset = 100;
        })
        .build();
    assert_eq!(f.run(&later), PASS);
    let c = f.counters("2001:db8:2:a::1").unwrap();
    assert_eq!((c.syn, c.unparsed, c.packets), (0, 1, 1));
    // A later fragment of UDP is a plain fragment.
    let udp = Packet::tcp("2001:db8:2:b::1", 0)
        .with(|p| {
            p.proto = PROTO_UDP;
            p.ipv6_ext = vec![FRAGMENT];
            p.frag_offset = 100;
        })
        .build();
    assert_eq!(f.run(&udp), PASS);
    assert_eq!(f.stat(Reason::Fragment).packets, 1);
}

/// Every prefix of `frame` shorter than `complete` (the end of the last
/// header the program reads) must PASS as malformed, count nothing per
/// source and never be dropped.
fn check_truncations(f: &mut Filter, frame: &[u8], complete: usize, src: &str) {
    let before = f.stat(Reason::Malformed).packets;
    let mut runs = 0;
    for len in 14..complete {
        assert_eq!(f.run(&frame[..len]), PASS, "truncated at {len}");
        runs += 1;
        assert_eq!(
            f.stat(Reason::Malformed).packets,
            before + runs,
            "truncated at {len} of {}: not counted as malformed",
            frame.len()
        );
    }
    assert!(
        f.counters(src).is_none(),
        "{src} was counted from a truncated frame"
    );
    // The complete headers parse.
    assert_eq!(f.run(&frame[..complete]), PASS);
    assert!(f.counters(src).is_some());
}

#[test]
fn truncation_at_every_header_boundary_is_malformed() {
    let mut f = Filter::new();
    let p = Packet::tcp("198.51.100.50", SYN).with(|p| {
        p.vlans = vec![packet::TPID_8021AD, packet::TPID_8021Q];
        p.ipv4_options = 8;
    });
    check_truncations(&mut f, &p.build(), p.l4_offset() + 20, "198.51.100.50");

    let p = Packet::tcp("2001:db8:3::1", SYN).with(|p| {
        p.vlans = vec![packet::TPID_8021Q];
        p.ipv6_ext = vec![HOPOPTS, AH, FRAGMENT];
    });
    check_truncations(&mut f, &p.build(), p.l4_offset() + 20, "2001:db8:3::1");
}

#[test]
fn frames_shorter_than_ethernet_are_refused_or_malformed() {
    let mut f = Filter::new();
    let frame = Packet::tcp("198.51.100.51", SYN).build();
    for len in 1..14 {
        // The kernel refuses XDP test input shorter than an Ethernet header;
        // if it ever accepts one, the program must call it malformed.
        let prog = loader::program(&mut f.ebpf).unwrap();
        if let Ok(r) = prog.test_run(TestRunOptions {
            data_in: Some(&frame[..len]),
            ..TestRunOptions::default()
        }) {
            assert_eq!(r.return_value, PASS, "len {len}");
        }
    }
    assert_eq!(f.stat(Reason::Passed).packets, 0);
}

#[test]
fn inconsistent_headers_are_malformed() {
    let mut f = Filter::new();
    let mut cases = Vec::new();
    // IPv4 version field says 5.
    let mut v = Packet::tcp("198.51.100.60", SYN).build();
    v[14] = 0x55;
    cases.push(("ipv4 version", v));
    // IHL below 5.
    let mut v = Packet::tcp("198.51.100.60", SYN).build();
    v[14] = 0x44;
    cases.push(("ihl 4", v));
    // Total length shorter than the header.
    let mut v = Packet::tcp("198.51.100.60", SYN).build();
    v[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("tot_len < ihl", v));
    // IHL claims options beyond the frame.
    let mut v = Packet::tcp("198.51.100.60", SYN).build();
    v.truncate(14 + 20 + 20);
    v[14] = 0x4f;
    cases.push(("options past the end", v));
    // TCP data offset below 5.
    let p = Packet::tcp("198.51.100.60", SYN);
    let mut v = p.build();
    v[p.l4_offset() + 12] = 0x40;
    cases.push(("doff 4", v));
    // TCP data offset beyond the IP payload.
    let mut v = p.build();
    v[p.l4_offset() + 12] = 0xf0;
    cases.push(("doff past payload", v));
    // IPv6 version field says 4.
    let mut v = Packet::tcp("2001:db8:4::1", SYN).build();
    v[14] = 0x40;
    cases.push(("ipv6 version", v));
    for (i, (what, frame)) in cases.iter().enumerate() {
        assert_eq!(f.run(frame), PASS, "{what}");
        assert_eq!(f.stat(Reason::Malformed).packets, i as u64 + 1, "{what}");
    }
    assert!(f.counters("198.51.100.60").is_none());
    assert!(f.counters("2001:db8:4::1").is_none());
}

#[test]
fn non_ip_and_non_tcp_pass_with_their_reason() {
    let mut f = Filter::new();
    assert_eq!(f.run(&packet::arp()), PASS);
    let udp = Packet::tcp("198.51.100.70", 0)
        .with(|p| p.proto = packet::PROTO_UDP)
        .build();
    assert_eq!(f.run(&udp), PASS);
    assert_eq!(f.stat(Reason::NonIp).packets, 1);
    assert_eq!(f.stat(Reason::NonTcp).packets, 1);
    assert_eq!(f.stat(Reason::NonTcp).bytes, udp.len() as u64);
    let c = f.counters("198.51.100.70").unwrap();
    assert_eq!(
        (c.packets, c.syn + c.ack + c.rst + c.fin + c.syn_ack),
        (1, 0)
    );
}

#[test]
fn exact_cidr_and_ipv6_prefix_blocks_drop() {
    let mut f = Filter::new();
    f.block("203.0.113.7", None);
    f.block("198.51.100.0/24", None);
    f.block("2001:db8:bad::/64", None);
    f.block("2001:db8:5::66", None);
    let cases = [
        ("203.0.113.7", DROP, Reason::BlockedExact),
        ("203.0.113.8", PASS, Reason::Passed),
        ("198.51.100.200", DROP, Reason::BlockedCidr),
        ("198.51.101.1", PASS, Reason::Passed),
        ("2001:db8:bad::1234", DROP, Reason::BlockedCidr),
        ("2001:db8:bad:1::1", PASS, Reason::Passed),
        ("2001:db8:5::66", DROP, Reason::BlockedExact),
        ("2001:db8:5::67", PASS, Reason::Passed),
    ];
    for (src, want, reason) in cases {
        let before = f.stat(reason).packets;
        let frame = Packet::tcp(src, SYN).build();
        assert_eq!(f.run(&frame), want, "{src}");
        assert_eq!(f.stat(reason).packets, before + 1, "{src}: {reason:?} slot");
        if want == DROP {
            assert!(
                f.counters(src).is_none(),
                "a dropped source must not be counted"
            );
        }
    }
}

#[test]
fn allowlist_beats_blocklist() {
    let mut f = Filter::new();
    f.block("198.51.100.0/24", None);
    f.block("198.51.100.9", None);
    f.allow("198.51.100.9");
    f.block("2001:db8:6::/48", None);
    f.allow("2001:db8:6:1::/64");
    let frame = Packet::tcp("198.51.100.9", SYN).build();
    assert_eq!(f.run(&frame), PASS);
    assert_eq!(f.run(&Packet::tcp("198.51.100.10", SYN).build()), DROP);
    assert_eq!(f.run(&Packet::tcp("2001:db8:6:1::5", SYN).build()), PASS);
    assert_eq!(f.run(&Packet::tcp("2001:db8:6:2::5", SYN).build()), DROP);
    assert_eq!(f.stat(Reason::Allowlisted).packets, 2);
    assert_eq!(
        f.stat(Reason::Allowlisted).bytes,
        2 * frame.len() as u64 + 20
    );
}

/// `addr` with bit `bit` (0 = the most significant) flipped.
fn flip(addr: std::net::IpAddr, bit: u32) -> std::net::IpAddr {
    match addr {
        std::net::IpAddr::V4(a) => {
            std::net::Ipv4Addr::from(u32::from(a) ^ (1u32 << (31 - bit))).into()
        }
        std::net::IpAddr::V6(a) => {
            std::net::Ipv6Addr::from(u128::from(a) ^ (1u128 << (127 - bit))).into()
        }
    }
}

#[test]
fn cidr_blocks_match_at_every_prefix_length() {
    let mut f = Filter::new();
    for (src, max) in [
        ("203.0.113.77", 32u8),
        ("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", 128),
    ] {
        let addr: std::net::IpAddr = src.parse().unwrap();
        for len in 0..=max {
            let net = ipnet::IpNet::new(addr, len).unwrap().trunc();
            let reason = match len == max {
                true => Reason::BlockedExact,
                false => Reason::BlockedCidr,
            };
            f.block(&net.to_string(), None);
            let before = f.stat(reason).packets;
            assert_eq!(f.run(&Packet::tcp(src, SYN).build()), DROP, "{net}");
            assert_eq!(f.stat(reason).packets, before + 1, "{net}: {reason:?}");
            // The first address outside it: the prefix's last bit flipped.
            if len > 0 {
                let out = flip(addr, len as u32 - 1).to_string();
                assert_eq!(
                    f.run(&Packet::tcp(&out, SYN).build()),
                    PASS,
                    "{out} vs {net}"
                );
            }
            // Removed: passes again (its length may stay marked until the
            // controller's next sweep; that only costs a look-up).
            assert!(f.maps.remove(ListKind::Block, net).unwrap());
            assert_eq!(f.run(&Packet::tcp(src, SYN).build()), PASS, "{net} removed");
        }
    }
}

#[test]
fn more_prefix_lengths_than_probed_are_answered_by_the_trie() {
    use filter_common::net_lens;
    let mut f = Filter::new();
    // Ten lengths, /8 to /26 in steps of two, each its own network: more
    // than the data path probes.
    let nets: Vec<ipnet::IpNet> = (0..10u8)
        .map(|i| {
            let addr: std::net::IpAddr = format!("{}.{}.0.0", 20 + i, 2 * i).parse().unwrap();
            ipnet::IpNet::new(addr, 8 + 2 * i).unwrap().trunc()
        })
        .collect();
    let hosts = |n: &ipnet::IpNet| n.hosts().next().unwrap().to_string();
    for (i, net) in nets.iter().enumerate() {
        f.block(&net.to_string(), None);
        let overflow = f.maps.net_lens().unwrap()[net_lens::FLAGS as usize];
        assert_eq!(
            overflow & net_lens::OVERFLOW_V4 != 0,
            i >= net_lens::MAX_PROBED,
            "{net}"
        );
        // Every entry so far still matches, whichever structure answers.
        for n in &nets[..=i] {
            assert_eq!(
                f.run(&Packet::tcp(&hosts(n), SYN).build()),
                DROP,
                "{n} with {}",
                i + 1
            );
        }
        assert_eq!(f.run(&Packet::tcp("99.0.0.1", SYN).build()), PASS);
    }
    // Down to eight lengths: the controller's sweep rewrites the lengths
    // and clears the overflow; the hash maps answer again.
    for net in &nets[8..] {
        assert!(f.maps.remove(ListKind::Block, *net).unwrap());
    }
    f.maps.sync_list_index([].iter(), nets[..8].iter()).unwrap();
    let lens = f.maps.net_lens().unwrap();
    assert_eq!(lens[net_lens::FLAGS as usize], 0);
    assert_eq!(lens[net_lens::V4 as usize].count_ones(), 8);
    for n in &nets[..8] {
        assert_eq!(f.run(&Packet::tcp(&hosts(n), SYN).build()), DROP, "{n}");
    }
    for n in &nets[8..] {
        assert_eq!(
            f.run(&Packet::tcp(&hosts(n), SYN).build()),
            PASS,
            "{n} removed"
        );
    }
}

#[test]
fn empty_lists_are_not_looked_up_and_every_writer_marks_what_it_fills() {
    use filter_common::net_lens;
    let mut f = Filter::new();
    let flags = |f: &Filter| f.maps.net_lens().unwrap()[net_lens::FLAGS as usize];
    assert_eq!(flags(&f), 0, "a fresh filter has nothing to look up");
    f.allow("192.0.2.0/24");
    f.block("203.0.113.7", None);
    f.allow("2001:db8:a::/48");
    f.block("2001:db8:b::1", None);
    let all = net_lens::ALLOW_V4 | net_lens::EXACT_V4 | net_lens::ALLOW_V6 | net_lens::EXACT_V6;
    assert_eq!(flags(&f), all);
    assert_eq!(f.run(&Packet::tcp("192.0.2.5", SYN).build()), PASS);
    assert_eq!(f.stat(Reason::Allowlisted).packets, 1);
    assert_eq!(f.run(&Packet::tcp("203.0.113.7", SYN).build()), DROP);
    assert_eq!(f.run(&Packet::tcp("2001:db8:b::1", SYN).build()), DROP);
    // The index is what the data path trusts: rewritten from the live
    // entries (the controller's sweep), it keeps every list that has one.
    let allow = [
        parse_net("192.0.2.0/24").unwrap(),
        parse_net("2001:db8:a::/48").unwrap(),
    ];
    let block = [
        parse_net("203.0.113.7").unwrap(),
        parse_net("2001:db8:b::1").unwrap(),
    ];
    f.maps.sync_list_index(allow.iter(), block.iter()).unwrap();
    assert_eq!(flags(&f), all);
    assert_eq!(f.run(&Packet::tcp("2001:db8:a::5", SYN).build()), PASS);
    assert_eq!(f.stat(Reason::Allowlisted).packets, 2);
    // Emptied lists drop out of it.
    assert!(f.maps.remove(ListKind::Block, block[0]).unwrap());
    f.maps
        .sync_list_index(allow.iter(), block[1..].iter())
        .unwrap();
    assert_eq!(flags(&f), all & !net_lens::EXACT_V4);
    assert_eq!(f.run(&Packet::tcp("203.0.113.7", SYN).build()), PASS);
}

#[test]
fn the_longest_live_cidr_entry_decides_and_an_expired_one_is_passed_over() {
    let mut f = Filter::new();
    let ack_only = filter_common::flag::bit(filter_common::flag::ACK);
    for (wide, narrow, inside, elsewhere) in [
        ("10.0.0.0/8", "10.1.2.0/24", "10.1.2.3", "10.9.9.9"),
        (
            "2001:db8::/32",
            "2001:db8:1:2::/64",
            "2001:db8:1:2::3",
            "2001:db8:9::9",
        ),
    ] {
        f.block(wide, None);
        // A narrower restriction (stray ACKs only) inside the block: the
        // longest entry decides, so the source's SYNs pass...
        f.restrict(narrow, Some(Duration::from_millis(400)), ack_only);
        assert_eq!(f.run(&Packet::tcp(inside, SYN).build()), PASS, "{inside}");
        assert_eq!(
            f.run(&Packet::tcp(elsewhere, SYN).build()),
            DROP,
            "{elsewhere}"
        );
    }
    // ...until the restriction expires: then the block underneath holds,
    // with nobody in userspace removing anything.
    std::thread::sleep(Duration::from_millis(500));
    for inside in ["10.1.2.3", "2001:db8:1:2::3"] {
        assert_eq!(f.run(&Packet::tcp(inside, SYN).build()), DROP, "{inside}");
    }
    // Several lengths present at once: each address meets its own longest
    // entry. Restrictions of different classes tell which one matched.
    use filter_common::flag;
    let mut g = Filter::new();
    g.restrict("172.0.0.0/8", None, flag::bit(flag::RST));
    g.restrict("172.16.0.0/16", None, flag::bit(flag::FIN));
    g.restrict("172.16.5.0/24", None, flag::bit(flag::SYN));
    let run = |g: &mut Filter, src: &str, flags: u8| g.run(&Packet::tcp(src, flags).build());
    assert_eq!(
        run(&mut g, "172.16.5.7", SYN),
        DROP,
        "the /24 restricts SYNs"
    );
    assert_eq!(run(&mut g, "172.16.5.7", FIN), PASS, "not the /16's FINs");
    assert_eq!(
        run(&mut g, "172.16.9.9", FIN),
        DROP,
        "the /16 restricts FINs"
    );
    assert_eq!(run(&mut g, "172.16.9.9", RST), PASS, "not the /8's RSTs");
    assert_eq!(
        run(&mut g, "172.99.0.1", RST),
        DROP,
        "the /8 restricts RSTs"
    );
    assert_eq!(run(&mut g, "172.99.0.1", SYN), PASS);
    assert_eq!(g.stat(Reason::Restricted).packets, 3);
}

#[test]
fn an_expired_narrower_entry_never_hides_a_live_wider_one() {
    let mut f = Filter::new();
    let stale = |f: &mut Filter, list, net: &str| {
        let mut e = new_entry(list_reason::ADMIN, None, "expired");
        e.expires_ns = clock::monotonic_ns() - 1;
        f.maps.insert(list, parse_net(net).unwrap(), &e).unwrap();
    };
    // Blocks, IPv4: a live /8 under four nested expired entries.
    f.block("10.0.0.0/8", None);
    // (The /32 goes to the exact map; the others nest in the trie.)
    for net in ["10.1.0.0/16", "10.1.2.0/24", "10.1.2.0/28", "10.1.2.3/32"] {
        stale(&mut f, ListKind::Block, net);
    }
    assert_eq!(f.run(&Packet::tcp("10.1.2.3", SYN).build()), DROP);
    assert_eq!(f.run(&Packet::tcp("10.1.2.4", SYN).build()), DROP);
    assert_eq!(f.stat(Reason::BlockedCidr).packets, 2);
    // One that expires while we watch, the trigger.
    f.block("172.16.0.0/12", None);
    f.block("172.17.0.0/16", Some(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(f.run(&Packet::tcp("172.17.2.3", SYN).build()), DROP);
    // IPv6.
    f.block("2001:db8::/32", None);
    stale(&mut f, ListKind::Block, "2001:db8:1::/48");
    stale(&mut f, ListKind::Block, "2001:db8:1:2::/64");
    assert_eq!(f.run(&Packet::tcp("2001:db8:1:2::9", SYN).build()), DROP);
    // Allow entries: an expired narrow allow does not hide a live wide one.
    f.allow("192.0.2.0/24");
    stale(&mut f, ListKind::Allow, "192.0.2.128/25");
    f.block("192.0.2.200", None);
    assert_eq!(f.run(&Packet::tcp("192.0.2.200", SYN).build()), PASS);
    assert_eq!(f.stat(Reason::Allowlisted).packets, 1);
    // With nothing live underneath, an expired entry matches nothing.
    stale(&mut f, ListKind::Block, "198.18.0.0/15");
    assert_eq!(f.run(&Packet::tcp("198.18.0.1", SYN).build()), PASS);
}

#[test]
fn expired_blocks_do_not_drop() {
    let mut f = Filter::new();
    // Already expired: inserted with an expiry in the past.
    let mut stale = new_entry(list_reason::ADMIN, None, "stale");
    stale.expires_ns = clock::monotonic_ns() - 1;
    f.maps
        .insert(ListKind::Block, parse_net("203.0.113.1").unwrap(), &stale)
        .unwrap();
    f.maps
        .insert(
            ListKind::Block,
            parse_net("203.0.114.0/24").unwrap(),
            &stale,
        )
        .unwrap();
    assert_eq!(f.run(&Packet::tcp("203.0.113.1", SYN).build()), PASS);
    assert_eq!(f.run(&Packet::tcp("203.0.114.1", SYN).build()), PASS);
    // Expires while we watch, with nobody in userspace touching it.
    f.block("203.0.113.2", Some(Duration::from_millis(300)));
    f.block("2001:db8:7::/64", Some(Duration::from_millis(300)));
    assert_eq!(f.run(&Packet::tcp("203.0.113.2", SYN).build()), DROP);
    assert_eq!(f.run(&Packet::tcp("2001:db8:7::1", SYN).build()), DROP);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(f.run(&Packet::tcp("203.0.113.2", SYN).build()), PASS);
    assert_eq!(f.run(&Packet::tcp("2001:db8:7::1", SYN).build()), PASS);
    // The entries are still listed, marked expired.
    let listed = f.maps.entries(ListKind::Block).unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|e| e.expired), "{listed:?}");
}

#[test]
fn stats_count_packets_and_bytes_per_reason() {
    let mut f = Filter::new();
    f.block("203.0.113.0/24", None);
    f.allow("192.0.2.0/24");
    let frames = [
        (Packet::tcp("198.51.100.1", SYN).build(), Reason::Passed),
        (
            Packet::tcp("198.51.100.1", ACK)
                .with(|p| p.payload = 500)
                .build(),
            Reason::Passed,
        ),
        (Packet::tcp("203.0.113.5", SYN).build(), Reason::BlockedCidr),
        (Packet::tcp("192.0.2.5", SYN).build(), Reason::Allowlisted),
        (packet::arp(), Reason::NonIp),
        (
            Packet::tcp("198.51.100.1", SYN).build()[..30].to_vec(),
            Reason::Malformed,
        ),
    ];
    let mut want = [(0u64, 0u64); Reason::COUNT];
    for (frame, reason) in &frames {
        f.run(frame);
        want[*reason as usize].0 += 1;
        want[*reason as usize].1 += frame.len() as u64;
    }
    let stats = f.maps.stats().unwrap();
    for r in Reason::ALL {
        let s = &stats[r as usize];
        assert_eq!((s.packets, s.bytes), want[r as usize], "{}", r.name());
    }
}

#[test]
fn ipv6_source_prefix_is_configurable() {
    let mut f = Filter::new();
    f.run(&Packet::tcp("2001:db8:8:1::1", SYN).build());
    f.run(&Packet::tcp("2001:db8:8:1:ffff::2", SYN).build());
    assert_eq!(
        f.counters("2001:db8:8:1::").unwrap().syn,
        2,
        "one /64, one source"
    );

    let mut f = Filter::with_config(Config {
        ipv6_prefix_len: 128,
        track_min_packets: 1,
        ..Config::default()
    });
    f.run(&Packet::tcp("2001:db8:8:1::1", SYN).build());
    f.run(&Packet::tcp("2001:db8:8:1:ffff::2", SYN).build());
    assert_eq!(f.counters("2001:db8:8:1::1").unwrap().syn, 1);
    assert_eq!(f.counters("2001:db8:8:1:ffff::2").unwrap().syn, 1);
    assert_eq!(f.maps.sources().unwrap().len(), 2);
}

#[test]
fn the_sketch_hash_is_keyed_afresh_for_every_load() {
    // The same spoofed flood into two loads: the few sources that collide
    // past the gate differ, because each load draws its own hash key (with
    // a fixed hash they would be the same, and computable in advance).
    let tracked = || {
        let mut f = Filter::with_config(Config {
            track_min_packets: 3,
            ..Config::default()
        });
        for i in 0..5000u32 {
            let src = std::net::Ipv4Addr::from(0x0a00_0000 + i * 7919).to_string();
            f.run(&Packet::tcp(&src, SYN).build());
        }
        let mut keys: Vec<_> = f
            .maps
            .sources()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        keys
    };
    let (a, b) = (tracked(), tracked());
    assert!(!a.is_empty() || !b.is_empty(), "no collisions to compare");
    assert_ne!(a, b, "two loads let the same sources through the gate");
}

#[test]
fn sketch_gates_tracking_of_new_sources() {
    let mut f = Filter::with_config(Config {
        track_min_packets: 3,
        ..Config::default()
    });
    let frame = Packet::tcp("198.51.100.80", SYN).build();
    f.run(&frame);
    f.run(&frame);
    assert!(
        f.counters("198.51.100.80").is_none(),
        "tracked before the gate"
    );
    f.run(&frame);
    let c = f
        .counters("198.51.100.80")
        .expect("tracked once the gate is reached");
    // The entry starts with the packet that crossed the gate.
    assert_eq!((c.syn, c.packets), (1, 1));
    f.run(&frame);
    assert_eq!(f.counters("198.51.100.80").unwrap().syn, 2);

    // A spoofed flood: 5000 sources, one packet each, more than the sketch
    // has counters. Almost none may reach the LRU (a count-min sketch can
    // only overestimate, so a few collisions are allowed: with the hash
    // keyed at random per load, about 1% here, varying from load to load).
    let flood = 5000u32;
    for i in 0..flood {
        let src = std::net::Ipv4Addr::from(0x0a00_0000 + i * 7919).to_string();
        f.run(&Packet::tcp(&src, SYN).build());
    }
    let tracked = f.maps.sources().unwrap().len() - 1;
    assert!(
        tracked <= flood as usize / 40,
        "{tracked} of {flood} spoofed sources tracked"
    );
    assert_eq!(f.stat(Reason::Passed).packets, 4 + flood as u64);
    // ...while the same flood without the gate inserts every source.
    let mut ungated = Filter::new();
    for i in 0..flood {
        let src = std::net::Ipv4Addr::from(0x0a00_0000 + i * 7919).to_string();
        ungated.run(&Packet::tcp(&src, SYN).build());
    }
    assert_eq!(ungated.maps.sources().unwrap().len(), flood as usize);
}

#[test]
fn rate_limit_cuts_a_flood_within_packets() {
    // Buckets are per CPU: keep every run on one CPU so they share one.
    filter_tests::pin_to_cpu(0);
    let mut limits = [filter_common::RateLimit::default(); filter_common::flag::COUNT];
    limits[filter_common::flag::SYN] = filter_common::RateLimit { rate: 10, burst: 5 };
    let mut f = Filter::with_config(Config {
        track_min_packets: 1,
        limits,
        ..Config::default()
    });
    let syn = Packet::tcp("198.51.100.90", SYN).build();
    let verdicts: Vec<u32> = (0..20).map(|_| f.run(&syn)).collect();
    // The burst passes, the rest of a back-to-back flood is dropped.
    assert_eq!(&verdicts[..5], &[PASS; 5]);
    assert_eq!(&verdicts[5..], &[DROP; 15]);
    // Other classes have no limit here.
    assert_eq!(f.run(&Packet::tcp("198.51.100.90", ACK).build()), PASS);
    // Counters show the offered load, and how much was cut.
    let c = f.counters("198.51.100.90").unwrap();
    assert_eq!((c.syn, c.ack, c.limited), (20, 1, 15));
    assert_eq!(f.stat(Reason::RateLimited).packets, 15);
    // Tokens come back at the configured rate (10/s), never beyond the burst.
    let idle = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(250));
    let low = (idle.elapsed().as_secs_f64() * 10.0).floor() as usize;
    let passed = (0..10).filter(|_| f.run(&syn) == PASS).count();
    let high = ((idle.elapsed().as_secs_f64() * 10.0).floor() as usize + 1).min(5);
    assert!(
        (low.min(5)..=high).contains(&passed),
        "{passed} passed after refilling at 10/s (expected {low}..={high})"
    );
    // Another source has its own bucket.
    assert_eq!(f.run(&Packet::tcp("198.51.100.91", SYN).build()), PASS);
}

#[test]
fn a_limited_stream_faster_than_the_refill_grain_still_passes_rate() {
    // A stream far faster than 1000 × rate per CPU (repeat runs the program
    // back to back, ~100 ns apart) must pass `rate` per second after the
    // burst, not starve: elapsed time that earned no whole milli-token is
    // carried, not thrown away.
    filter_tests::pin_to_cpu(0);
    let mut limits = [filter_common::RateLimit::default(); filter_common::flag::COUNT];
    limits[filter_common::flag::SYN] = filter_common::RateLimit {
        rate: 100,
        burst: 10,
    };
    let mut f = Filter::with_config(Config {
        track_min_packets: 1,
        limits,
        ..Config::default()
    });
    let syn = Packet::tcp("198.51.100.92", SYN).build();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        f.run_repeat(&syn, 20_000);
    }
    let secs = t0.elapsed().as_secs_f64();
    let c = f.counters("198.51.100.92").unwrap();
    let passed = c.syn - c.limited;
    let expected = 10.0 + 100.0 * secs;
    assert!(
        c.syn > 100_000,
        "not a fast stream: {} SYNs in {secs:.2} s",
        c.syn
    );
    assert!(
        (passed as f64) > expected * 0.85 && (passed as f64) <= expected + 2.0,
        "{passed} of {} passed in {secs:.2} s at 100/s, burst 10 (expected about {expected:.0})",
        c.syn
    );
}

#[test]
fn pins_from_another_layout_are_refused_before_loading() {
    require_root();
    let fs = filter_tests::netns::BpfFs::new();
    let dir = fs.path("filter");
    std::fs::create_dir_all(&dir).unwrap();
    // A fresh directory loads and pins every map, with the right layouts.
    drop(loader::load(Some(&dir)).expect("fresh load"));
    loader::check_pinned_layouts(&dir).expect("own pins");
    // Replace CONFIG with a map of another value size, as an older build
    // with a smaller Config would have left it.
    std::fs::remove_file(dir.join("CONFIG")).unwrap();
    let mut other = loader::load(None).unwrap();
    let stats = other.take_map("STATS").unwrap();
    match &stats {
        aya::maps::Map::PerCpuArray(data) => data.pin(dir.join("CONFIG")).unwrap(),
        _ => unreachable!(),
    }
    let err = loader::load(Some(&dir)).expect_err("mismatched pins must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("pinned map CONFIG") && msg.contains("another version"),
        "{msg}"
    );
}

#[test]
fn batched_reads_of_sources_equal_one_by_one_reads() {
    let mut f = Filter::new();
    // 3000 sources, varied counts, some on each CPU (per-CPU values summed).
    for i in 0..3000u32 {
        filter_tests::pin_to_cpu((i % 2) as usize);
        let src = std::net::Ipv4Addr::from(0x0a10_0000 + i).to_string();
        for n in 0..(1 + i % 3) {
            let flags = if n == 0 { SYN } else { ACK };
            f.run(&Packet::tcp(&src, flags).build());
        }
    }
    f.run(&Packet::tcp("2001:db8:77::1", RST).build());
    let mut batched = f
        .maps
        .sources_batched()
        .expect("cpu count")
        .expect("batch look-up");
    let mut single = f.maps.sources_one_by_one().unwrap();
    batched.sort_by_key(|(k, _)| *k);
    single.sort_by_key(|(k, _)| *k);
    assert_eq!(batched.len(), 3001);
    assert_eq!(batched, single);
    let total: u64 = batched.iter().map(|(_, c)| c.packets).sum();
    assert_eq!(total, (0..3000u64).map(|i| 1 + i % 3).sum::<u64>() + 1);
}

#[test]
fn the_map_catalogue_is_the_compiled_objects() {
    require_root();
    let fs = filter_tests::netns::BpfFs::new();
    let dir = fs.path("filter");
    std::fs::create_dir_all(&dir).unwrap();
    let ebpf = loader::load(Some(&dir)).expect("load with pins");
    // The same names: a #[map] static renamed, added or removed without the
    // catalogue (or the other way round) fails here, not on a host.
    let mut compiled: Vec<&str> = ebpf
        .maps()
        .map(|(name, _)| name)
        .filter(|n| !n.starts_with('.')) // .rodata and friends: globals
        .collect();
    compiled.sort_unstable();
    let mut listed: Vec<&str> = filter_common::maps::ALL.iter().map(|m| m.name).collect();
    listed.sort_unstable();
    assert_eq!(compiled, listed);
    // The same layouts, as the kernel created them.
    for def in filter_common::maps::ALL {
        let info = aya::maps::MapData::from_pin(dir.join(def.name))
            .and_then(|m| m.info())
            .unwrap_or_else(|e| panic!("{}: {e}", def.name));
        assert_eq!(
            (info.key_size(), info.value_size()),
            (def.key_size, def.value_size),
            "{}",
            def.name
        );
    }
}

fn first_syn_drop_config() -> Config {
    Config {
        track_min_packets: 1,
        verify_mode: filter_common::verify_mode::FIRST_SYN_DROP,
        verify_active: 1,
        retry_min_ms: 150,
        retry_max_ms: 700,
        verified_ttl_s: 60,
        ..Config::default()
    }
}

#[test]
fn first_syn_drop_verifies_a_source_by_its_retransmission_inside_the_window() {
    let mut f = Filter::with_config(first_syn_drop_config());
    let syn = Packet::tcp("198.51.100.70", SYN).build();
    // The first SYN is the challenge: dropped.
    assert_eq!(f.run(&syn), DROP);
    assert_eq!(f.stat(Reason::Unverified).packets, 1);
    // Repeated at once (a flood resending, not a TCP stack): too soon.
    assert_eq!(f.run(&syn), DROP);
    assert_eq!(f.stat(Reason::ChallengeFailed).packets, 1);
    // The retransmission inside the window verifies the source...
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.run(&syn), PASS);
    assert_eq!(f.stat(Reason::Verified).packets, 1);
    // ...and its later SYNs pass as they are.
    assert_eq!(f.run(&syn), PASS);
    assert_eq!(f.stat(Reason::Passed).packets, 1);
    // Other packets of a source are not challenged.
    assert_eq!(f.run(&Packet::tcp("198.51.100.71", ACK).build()), PASS);

    // Outside the window the challenge starts over.
    let late = Packet::tcp("198.51.100.72", SYN).build();
    assert_eq!(f.run(&late), DROP);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(f.run(&late), DROP, "a retransmission after the window");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.run(&late), PASS, "the next one, inside the new window");

    // IPv6 (per /64), the same way.
    let v6 = Packet::tcp("2001:db8:70::1", SYN).build();
    assert_eq!(f.run(&v6), DROP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.run(&Packet::tcp("2001:db8:70::2", SYN).build()), PASS);

    // Allowlisted sources are never challenged.
    f.allow("192.0.2.0/24");
    assert_eq!(f.run(&Packet::tcp("192.0.2.9", SYN).build()), PASS);
}

#[test]
fn a_spoofed_flood_never_verifies_and_inactive_verification_passes_every_syn() {
    let mut f = Filter::with_config(first_syn_drop_config());
    // One SYN per forged address, as a random-source flood sends them.
    for i in 0..2000u32 {
        let src = std::net::Ipv4Addr::from(0x0a40_0000 + i).to_string();
        assert_eq!(f.run(&Packet::tcp(&src, SYN).build()), DROP);
    }
    assert_eq!(f.stat(Reason::Unverified).packets, 2000);
    assert_eq!(f.stat(Reason::Verified).packets, 0);
    // Off (as `auto` leaves it while calm): SYNs pass, and are counted for
    // the controller's SYN rate.
    let cfg = Config {
        verify_active: 0,
        ..first_syn_drop_config()
    };
    f.maps.set_config(&cfg).unwrap();
    assert_eq!(f.run(&Packet::tcp("10.64.0.1", SYN).build()), PASS);
    let syns: u64 = f.counter(filter_common::counter::SYNS);
    assert_eq!(syns, 2001);
}

/// A config counting every source at once, with detection windows of
/// `window` and the given per-CPU triggers (SYN, SYN-ACK, ACK, ...).
fn window_config(window: Duration, trigger: &[u32]) -> Config {
    let mut t = [0u32; filter_common::window::METRICS];
    t[..trigger.len()].copy_from_slice(trigger);
    Config {
        track_min_packets: 1,
        window_ns: window.as_nanos() as u64,
        trigger: t,
        ..Config::default()
    }
}

fn drain(events: &mut filter_ctl::kernel::events::Events) -> Vec<filter_common::Event> {
    let mut out = Vec::new();
    events.drain(|e| out.push(e));
    out
}

#[test]
fn a_source_crossing_its_trigger_is_reported_once_per_window() {
    use filter_common::{flag, window};
    // A minute-long window: no roll-over during the test.
    let minute = Duration::from_secs(60);
    let mut f = Filter::with_config(window_config(minute, &[5, 0, 3]));
    let mut events = filter_ctl::kernel::events::Events::from_ebpf(&mut f.ebpf).unwrap();
    let src = "198.51.100.80";
    let syn = Packet::tcp(src, SYN).build();
    for _ in 0..4 {
        f.run(&syn);
    }
    assert!(drain(&mut events).is_empty(), "under the trigger");
    f.run(&syn);
    let got = drain(&mut events);
    let key = filter_ctl::model::addr::source_key(src.parse().unwrap(), 64);
    let now_win = filter_ctl::detect::window_of(clock::monotonic_ns(), minute);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].key, got[0].metric, got[0].count, got[0].window),
        (key, flag::SYN as u32, 5, now_win)
    );
    // Once per window: 20 more SYNs are counted, not reported again.
    for _ in 0..20 {
        f.run(&syn);
    }
    assert!(drain(&mut events).is_empty());
    let per_cpu = f.maps.source_cpus(&key).unwrap().unwrap();
    let w = filter_ctl::detect::window_counts(&per_cpu, now_win);
    assert_eq!((w.cur[flag::SYN], w.prev[flag::SYN]), (25, 0));
    // Stray ACKs (no socket here) have their own trigger; RSTs none (0).
    let ack = Packet::tcp(src, ACK).build();
    let rst = Packet::tcp(src, RST).build();
    for _ in 0..3 {
        f.run(&ack);
        f.run(&rst);
    }
    let got = drain(&mut events);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].metric, got[0].count), (flag::ACK as u32, 3));
    // Windows off (0): counted, never reported.
    let mut quiet = Filter::with_config(window_config(Duration::ZERO, &[1, 1, 1]));
    let mut none = filter_ctl::kernel::events::Events::from_ebpf(&mut quiet.ebpf).unwrap();
    quiet.run(&syn);
    assert!(drain(&mut none).is_empty());
    assert_eq!(quiet.counters(src).unwrap().syn, 1);
    assert_eq!(window::METRICS, 8);
}

#[test]
fn window_counts_roll_over_and_report_again_in_the_next_window() {
    use filter_common::flag;
    let window = Duration::from_millis(300);
    let mut f = Filter::with_config(window_config(window, &[3]));
    let mut events = filter_ctl::kernel::events::Events::from_ebpf(&mut f.ebpf).unwrap();
    let src = "198.51.100.81";
    let key = filter_ctl::model::addr::source_key(src.parse().unwrap(), 64);
    let syn = Packet::tcp(src, SYN).build();
    // Start just after a window begins, so that the bursts below fall in
    // two consecutive windows.
    let next = |now: u64| (now / window.as_nanos() as u64 + 1) * window.as_nanos() as u64;
    let now = clock::monotonic_ns();
    std::thread::sleep(Duration::from_nanos(next(now) - now + 10_000_000));
    let first = filter_ctl::detect::window_of(clock::monotonic_ns(), window);
    // One CPU for the whole test, so that one entry holds every count.
    filter_tests::pin_to_cpu(0);
    for _ in 0..4 {
        f.run(&syn);
    }
    let now = clock::monotonic_ns();
    std::thread::sleep(Duration::from_nanos(next(now) - now + 10_000_000));
    for _ in 0..3 {
        f.run(&syn);
    }
    let got = drain(&mut events);
    assert_eq!(
        got.iter().map(|e| (e.window, e.count)).collect::<Vec<_>>(),
        [(first, 3), (first + 1, 3)]
    );
    let per_cpu = f.maps.source_cpus(&key).unwrap().unwrap();
    let w = filter_ctl::detect::window_counts(&per_cpu, first + 1);
    assert_eq!((w.cur[flag::SYN], w.prev[flag::SYN]), (3, 4));
    // Two windows later the counts are stale: nothing.
    let w = filter_ctl::detect::window_counts(&per_cpu, first + 3);
    assert_eq!((w.cur[flag::SYN], w.prev[flag::SYN]), (0, 0));
}

#[test]
fn a_full_event_ring_counts_what_it_could_not_take() {
    // Every new source reports at its first SYN: more sources than the
    // ring holds, and nobody reading it.
    let mut f = Filter::with_config(window_config(Duration::from_secs(60), &[1]));
    let mut events = filter_ctl::kernel::events::Events::from_ebpf(&mut f.ebpf).unwrap();
    let n = 40_000u32;
    let mut frame = Packet::tcp("10.0.0.1", SYN).build();
    for i in 0..n {
        frame[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        f.run(&frame);
    }
    let taken = drain(&mut events).len() as u64;
    let lost = f.counter(filter_common::counter::EVENTS_LOST);
    assert!(lost > 0, "the ring held all {n}?");
    assert!(taken > 20_000, "only {taken} fit in the ring");
    assert_eq!(taken + lost, n as u64, "every report taken or counted");
    // Nothing more: a lost report is retried by the next packet only.
    assert!(drain(&mut events).is_empty());
}
