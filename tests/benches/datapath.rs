//! Data-path benchmark: nanoseconds per packet through BPF_PROG_TEST_RUN,
//! each verdict beside a bare `XDP_DROP` program measured in the same run.
//! Not a test: nothing here asserts a time. Ratios matter more than the
//! absolute numbers on a shared, noisy machine.
//!
//! Two methods:
//! * cache-hot: one frame repeated `REPEAT` times inside the kernel (the
//!   kernel reports the mean); the same source every time.
//! * spoofed flood: a different source address in every frame, one run per
//!   frame, the kernel-measured time of each run averaged. This is the case
//!   the sketch gate exists for.
//!
//! Everything runs in a private network namespace holding a real TCP
//! connection, so the socket look-up the filter makes for non-SYN packets
//! answers from real kernel tables: a packet of that connection is owned,
//! the same packet from another port is stray.

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use filter_common::{list_reason, Config};
use filter_ctl::{
    kernel::loader,
    kernel::maps::{new_entry, ListKind, Maps},
    model::addr::parse_net,
};
use filter_tests::{
    netns::BpfFs,
    packet::{Packet, ACK, PSH, SYN},
    require_root,
    sockets::{namespace, Connection},
    BARE_DROP_OBJECT,
};

const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 5;
const FLOOD_FRAMES: u32 = 50_000;

fn main() {
    // `cargo bench` passes --bench; `--veth` adds the receiver comparison.
    require_root();
    let veth = std::env::args().any(|a| a == "--veth");
    namespace().run(bench);
    if veth {
        veth_receiver();
    }
}

fn bench() {
    let mut bare = Ebpf::load(BARE_DROP_OBJECT).expect("loading bare-drop");
    let bare_prog: &mut Xdp = bare.program_mut("bare_drop").unwrap().try_into().unwrap();
    bare_prog.load().unwrap();

    let mut ebpf = loader::load(None).expect("loading the filter");
    // How close the program is to the verifier's 1M-instruction budget.
    let verified = loader::program(&mut ebpf)
        .unwrap()
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count());
    println!("verifier: {verified:?} instructions processed (limit 1 000 000)");
    let mut maps = Maps::from_ebpf(&mut ebpf).unwrap();
    maps.set_config(&Config::default()).unwrap();
    let entry = new_entry(list_reason::ADMIN, None, "bench");
    for net in ["203.0.113.7", "198.51.100.0/24"] {
        maps.insert(ListKind::Block, parse_net(net).unwrap(), &entry)
            .unwrap();
    }
    maps.insert(ListKind::Allow, parse_net("192.0.2.0/24").unwrap(), &entry)
        .unwrap();
    let frame = |src: &str| Packet::tcp(src, SYN).build();
    let mut malformed = frame("192.0.2.200");
    malformed.truncate(14 + 10);

    println!("data path, ns/packet (median of {ROUNDS} rounds of {REPEAT} runs, cache-hot)");
    println!(
        "{:<44} {:>10} {:>12} {:>10}",
        "case", "filter", "bare drop", "ratio"
    );
    // A live connection 10.9.0.2 -> 10.9.0.1:7000 in this namespace.
    let conn = Connection::open("10.9.0.1:7000", "10.9.0.2:0");
    let stray_port = |p: Packet| p.with(|p| p.sport = p.sport.wrapping_add(1));
    let cases: [(&str, Vec<u8>); 10] = [
        ("blocked source (exact /32)", frame("203.0.113.7")),
        ("blocked source (CIDR /24)", frame("198.51.100.9")),
        ("allowlisted source", frame("192.0.2.10")),
        (
            "unlisted source, SYN, counted and passed",
            frame("100.64.0.1"),
        ),
        (
            "unlisted IPv6 source, SYN, counted and passed",
            frame("2001:db8::1"),
        ),
        (
            "ACK in a connection (look-up: owned)",
            conn.packet(ACK).build(),
        ),
        (
            "data in a connection (look-up: owned)",
            conn.packet(ACK | PSH).with(|p| p.payload = 1000).build(),
        ),
        (
            "stray ACK, no socket (look-up: none)",
            stray_port(conn.packet(ACK))
                .with(|p| p.dport = 7999)
                .build(),
        ),
        (
            "stray ACK to a listening port",
            stray_port(conn.packet(ACK)).build(),
        ),
        ("malformed (truncated IPv4)", malformed),
    ];
    for (name, data) in &cases {
        let filt = median(|| hot_ns(loader::program(&mut ebpf).unwrap(), data));
        let base = median(|| hot_ns(bare_prog, data));
        println!("{name:<44} {filt:>10.1} {base:>12.1} {:>9.2}x", filt / base);
    }
    // CIDR blocks among many: 10 000 /24s,
    // looked up as this build does (a hash probe per length in use), then
    // through the trie holding the same entries (as builds before it did),
    // forced by the family's overflow flag.
    for i in 0..10_000u32 {
        let net = std::net::Ipv4Addr::from(0x2c00_0000 + (i << 8));
        maps.insert(
            ListKind::Block,
            parse_net(&format!("{net}/24")).unwrap(),
            &entry,
        )
        .unwrap();
    }
    // A source deep in them (the trie's walk is longest there).
    let data = &frame("44.20.30.9");
    let flags = maps.net_lens().unwrap()[filter_common::net_lens::FLAGS as usize];
    for (name, overflow) in [
        ("CIDR /24 among 10 001: hash per length", 0),
        (
            "CIDR /24 among 10 001: LPM trie",
            filter_common::net_lens::OVERFLOW_V4,
        ),
    ] {
        maps.set_net_lens_slot(filter_common::net_lens::FLAGS, flags | overflow)
            .unwrap();
        let filt = median(|| hot_ns(loader::program(&mut ebpf).unwrap(), data));
        let base = median(|| hot_ns(bare_prog, data));
        println!("{name:<44} {filt:>10.1} {base:>12.1} {:>9.2}x", filt / base);
    }
    // The same, each frame from another listed /24 (one run each, as in
    // the spoofed flood below): a botnet spread over many networks, where
    // the trie's nodes are no longer all in cache.
    let spread: Vec<Vec<u8>> = (0..FLOOD_FRAMES)
        .map(|i| {
            let net = i.wrapping_mul(2_654_435_761) % 10_000;
            let src = std::net::Ipv4Addr::from(0x2c00_0000 + (net << 8) + (i & 0xff));
            frame(&src.to_string())
        })
        .collect();
    let base = flood_ns(bare_prog, &spread);
    for (name, overflow) in [
        ("spread over 10 000 /24s: hash (single runs)", 0),
        (
            "spread over 10 000 /24s: trie (single runs)",
            filter_common::net_lens::OVERFLOW_V4,
        ),
    ] {
        maps.set_net_lens_slot(filter_common::net_lens::FLAGS, flags | overflow)
            .unwrap();
        let filt = flood_ns(loader::program(&mut ebpf).unwrap(), &spread);
        println!("{name:<44} {filt:>10.1} {base:>12.1} {:>9.2}x", filt / base);
    }
    maps.set_net_lens_slot(filter_common::net_lens::FLAGS, flags)
        .unwrap();
    let pins = BpfFs::new();
    // xdp-tools' xdp-filter, loaded from Debian's objects, on the unlisted
    // frame: the nearest existing tool doing the same look-ups.
    for obj in ["xdpfilt_alw_ip", "xdpfilt_alw_all"] {
        let data = &cases[3].1; // the unlisted SYN
        let name = format!("xdp-filter {obj} (unlisted source)");
        match load_xdp_filter(obj, &pins) {
            Ok(mut other) => {
                let prog: &mut Xdp = other.program_mut(obj).unwrap().try_into().unwrap();
                let filt = median(|| hot_ns(prog, data));
                let base = median(|| hot_ns(bare_prog, data));
                println!("{name:<44} {filt:>10.1} {base:>12.1} {:>9.2}x", filt / base);
            }
            Err(e) => println!("{name:<44} skipped: {e}"),
        }
    }

    verification(bare_prog, &conn);

    println!("\nspoofed SYN flood, ns/packet ({FLOOD_FRAMES} distinct sources, one run each, kernel-timed)");
    println!(
        "{:<44} {:>10} {:>12} {:>10}",
        "case", "filter", "bare drop", "ratio"
    );
    let flood: Vec<Vec<u8>> = (0..FLOOD_FRAMES)
        .map(|i| {
            frame(
                &std::net::Ipv4Addr::from(
                    0x6440_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761) >> 8),
                )
                .to_string(),
            )
        })
        .collect();
    let base = flood_ns(bare_prog, &flood);
    for (name, track_min) in [
        (
            "sketch gate on (default, 4 packets)",
            filter_common::DEFAULT_TRACK_MIN_PACKETS,
        ),
        ("gate off: LRU insert per new source", 1),
    ] {
        maps.set_config(&Config {
            track_min_packets: track_min,
            ..Config::default()
        })
        .unwrap();
        let filt = flood_ns(loader::program(&mut ebpf).unwrap(), &flood);
        println!("{name:<44} {filt:>10.1} {base:>12.1} {:>9.2}x", filt / base);
    }
    let tracked = maps.sources().unwrap().len();
    println!(
        "(sources tracked after both floods: {tracked}; LRU capacity {})",
        filter_common::capacity::SOURCES
    );
    // IPv6: each frame from another /64, through the default gate.
    maps.set_config(&Config::default()).unwrap();
    let flood6: Vec<Vec<u8>> = (0..FLOOD_FRAMES)
        .map(|i| {
            let net = (i.wrapping_mul(2_654_435_761) as u128) << 64;
            frame(&std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | net | 1).to_string())
        })
        .collect();
    let base6 = flood_ns(bare_prog, &flood6);
    let filt6 = flood_ns(loader::program(&mut ebpf).unwrap(), &flood6);
    println!(
        "{:<44} {filt6:>10.1} {base6:>12.1} {:>9.2}x",
        "IPv6, a /64 per frame, gate on",
        filt6 / base6
    );

    controller_cycle();
    controller_at_scale();
    controller_lists();
}

/// `syn_cookie` verification: a SYN from an unverified source answered
/// with a cookie SYN-ACK (XDP_TX), and the ACK that returns the cookie,
/// against the connection's listener (10.9.0.1:7000). The answer rewrites
/// the frame, so it is timed one run at a time (kernel-timed, like the
/// spoofed flood); the ACK is cache-hot.
fn verification(bare: &Xdp, conn: &Connection) {
    const RUNS: usize = 20_000;
    std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").expect("tcp_syncookies");
    let mut ebpf = loader::load(None).expect("loading the filter");
    let mut maps = Maps::from_ebpf(&mut ebpf).unwrap();
    maps.set_config(&Config {
        verify_mode: filter_common::verify_mode::SYN_COOKIE,
        verify_active: 1,
        verified_ttl_s: 3600,
        ..Config::default()
    })
    .unwrap();
    let server = conn.listener.local_addr().unwrap();
    let syn = Packet::tcp("10.9.0.2", SYN).with(|p| {
        p.dst = server.ip();
        p.dport = server.port();
        p.sport = 50_000;
        p.seq = 7;
        p.tcp_doff = 10;
        p.mss = Some(1460);
    });
    let frame = syn.build();
    let prog = loader::program(&mut ebpf).unwrap();
    let mut out = vec![0u8; 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    assert_eq!(r.return_value, 3, "the SYN was not answered (XDP_TX)");
    let cookie = u32::from_be_bytes(out[38..42].try_into().unwrap());
    let frames = vec![frame.clone(); RUNS];
    let answer = flood_ns(prog, &frames);
    let bare_single = flood_ns(bare, &frames);
    let ack = syn
        .clone()
        .with(|p| {
            p.tcp_flags = ACK;
            p.tcp_doff = 5;
            p.mss = None;
            p.seq = 8;
            p.ack = cookie.wrapping_add(1);
        })
        .build();
    let check = median(|| hot_ns(prog, &ack));
    let bare_hot = median(|| hot_ns(bare, &ack));
    println!("\nsyn_cookie verification, ns/packet (against a real listener)");
    println!(
        "{:<44} {:>10} {:>12} {:>10}",
        "case", "filter", "bare drop", "ratio"
    );
    println!(
        "{:<44} {answer:>10.1} {bare_single:>12.1} {:>9.2}x",
        "SYN answered with a cookie (single runs)",
        answer / bare_single
    );
    println!(
        "{:<44} {check:>10.1} {bare_hot:>12.1} {:>9.2}x",
        "ACK carrying the cookie (cache-hot)",
        check / bare_hot
    );
    println!(
        "(one core answers about {:.2} Mpps of SYNs with cookies, at the single-run cost)",
        1e3 / answer
    );

    // The transparent route: our own cookie, every option (a Linux SYN:
    // MSS, SACK, timestamps, window scale), and the ACK check it needs in
    // XDP, timed on a forged cookie (the flood case: every one is hashed
    // and dropped; a valid one verifies its source once).
    maps.set_cookie_settings(&filter_common::cookie::Settings {
        keys: [[1, 2], [3, 4]],
        route: filter_common::cookie::route::KFUNC,
        wscale: 7,
        timestamps: 1,
        sack: 1,
        window_scaling: 1,
    })
    .unwrap();
    let own = syn
        .with(|p| {
            p.src = "10.9.0.3".parse().unwrap();
            p.options = vec![
                2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 9,
            ];
        })
        .build();
    let frames = vec![own; RUNS];
    let own_answer = flood_ns(prog, &frames);
    let forged = Packet::tcp("10.9.0.4", ACK)
        .with(|p| {
            p.dst = server.ip();
            p.dport = server.port();
            p.sport = 50_001;
            p.seq = 8;
            p.ack = 0x5555;
        })
        .build();
    let own_check = median(|| hot_ns(prog, &forged));
    println!(
        "{:<44} {own_answer:>10.1} {bare_single:>12.1} {:>9.2}x",
        "SYN answered with our own cookie (single)",
        own_answer / bare_single
    );
    println!(
        "{:<44} {own_check:>10.1} {bare_hot:>12.1} {:>9.2}x",
        "ACK with a forged own cookie (cache-hot)",
        own_check / bare_hot
    );
    println!(
        "(own cookie: one core answers about {:.2} Mpps)",
        1e3 / own_answer
    );
}

/// The controller's work that grows with the lists, not the sources: with
/// 200 000 exact blocks and 10 000 offenders (a long random-source
/// attack), the cycle's list read, the promotion check of 10 000
/// detections, the state write and an hourly audit prune.
fn controller_lists() {
    use filter_ctl::{
        detect::{promotable, Detection, Listed, Offenders},
        kernel::maps::{new_entry, ListKind},
        policy::{Blocking, Capacities},
        service::state::State,
    };
    use std::time::Instant;
    const BLOCKS: u32 = 200_000;
    const OFFENDERS: u32 = 10_000;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!("\ncontroller with {BLOCKS} exact blocks and {OFFENDERS} offenders, ms:");
    let caps = Capacities {
        block_exact: 262_144,
        ..Capacities::default()
    };
    let mut ebpf = loader::load_with(None, &caps).unwrap();
    let mut maps = Maps::from_ebpf(&mut ebpf).unwrap();
    let entry = new_entry(filter_common::list_reason::DETECTOR, None, "bench");
    for i in 0..BLOCKS {
        let net = ipnet::IpNet::from(std::net::IpAddr::from((0x0b00_0000u32 + i).to_be_bytes()));
        maps.insert(ListKind::Block, net, &entry).unwrap();
    }
    let t = Instant::now();
    let raw = maps.raw_entries(ListKind::Block).unwrap();
    let read = t.elapsed();
    assert_eq!(raw.len(), BLOCKS as usize);
    let t = Instant::now();
    let listed = maps.entries(ListKind::Block).unwrap().len();
    let list = t.elapsed();
    assert_eq!(listed, BLOCKS as usize);
    let blocked: Vec<Listed> = raw
        .iter()
        .map(|(net, e)| Listed {
            net: *net,
            scope: e.scope,
        })
        .collect();
    // 10 000 detections of sources not yet blocked.
    let detections: Vec<Detection> = (0..OFFENDERS)
        .map(|i| Detection {
            key: filter_ctl::model::addr::source_key(
                std::net::IpAddr::from((0x0c00_0000u32 + i).to_be_bytes()),
                64,
            ),
            metric: 0,
            rate: 1000.0,
            threshold: 100,
        })
        .collect();
    let allow: Vec<ipnet::IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
    let t = Instant::now();
    let p = promotable(
        detections,
        |k| filter_ctl::model::addr::source_net(k, 64),
        &allow,
        &blocked,
    );
    let promote = t.elapsed();
    assert_eq!(p.len(), OFFENDERS as usize);
    let mut state = State::default();
    let mut offenders = Offenders::default();
    for (net, _, _) in &p {
        offenders.promote(net, 1_800_000_000, &Blocking::default());
    }
    state.offenders = offenders;
    let dir = std::env::temp_dir().join(format!("filter-bench-state-{}", std::process::id()));
    let t = Instant::now();
    state.save(&dir).unwrap();
    let save = t.elapsed();
    let size = std::fs::metadata(dir.join("state.json")).unwrap().len();
    // An audit log of 1 000 000 lines, all within the retention.
    let log = dir.join("audit.jsonl");
    let line =
        "{\"ts\":\"2026-11-22T00:00:00.000Z\",\"event\":\"promote\",\"source\":\"11.0.0.1/32\"}\n";
    std::fs::write(&log, line.repeat(1_000_000)).unwrap();
    let mut audit = filter_ctl::service::audit::AuditLog::open(&log).unwrap();
    let t = Instant::now();
    let now = humantime::parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
    assert_eq!(
        audit
            .prune(std::time::Duration::from_secs(86_400 * 180), now)
            .unwrap()
            .lines,
        0
    );
    let prune = t.elapsed();
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "cycle's block list read {:.1} (`list blocked` with text: {:.1}), promotion check {:.1}, state write {:.1} ({} KiB), audit prune of 1M lines {:.2}",
        ms(read),
        ms(list),
        ms(promote),
        ms(save),
        size / 1024,
        ms(prune)
    );
}

/// The controller's per-interval work (read every tracked source, summing
/// per-CPU values, then detect) at growing table sizes. The table is filled
/// through the real data path: one distinct source per BPF_PROG_TEST_RUN.
fn controller_cycle() {
    println!("\ncontroller: a full scan of SOURCES (the fallback after lost events), ms");
    println!(
        "{:>10} {:>14} {:>14}",
        "sources", "scan batched", "read 1-by-1"
    );
    for n in [10_000u32, 65_536, 262_144, 1_048_576] {
        let caps = filter_ctl::policy::Capacities {
            sources: n,
            ..filter_ctl::policy::Capacities::default()
        };
        let mut ebpf = loader::load_with(None, &caps).unwrap();
        let mut maps = Maps::from_ebpf(&mut ebpf).unwrap();
        maps.set_config(&Config {
            track_min_packets: 1,
            ..Config::default()
        })
        .unwrap();
        fill_sources(loader::program(&mut ebpf).unwrap(), n, 0);
        let t = std::time::Instant::now();
        let mut scanned = 0usize;
        maps.for_each_source(|_, _| scanned += 1).unwrap();
        let scan = t.elapsed();
        let t = std::time::Instant::now();
        let single = maps.sources_one_by_one().unwrap().len();
        let read_single = t.elapsed();
        assert_eq!(single, scanned);
        // LRU maps may evict a little before they are full.
        assert!(scanned as f64 > n as f64 * 0.9, "{scanned} of {n}");
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!("{scanned:>10} {:>14.1} {:>14.1}", ms(scan), ms(read_single));
    }
}

/// The real controller (`filter-ctl run`, the release build) with room for
/// 1 048 576 sources: its CPU time per interval, its longest cycle and its
/// resident memory as `SOURCES` fills up, then with offenders. The sources
/// come in through a second copy of the program sharing the controller's
/// pinned maps (BPF_PROG_TEST_RUN), so the kernel path is the real one.
fn controller_at_scale() {
    use filter_tests::controller::Controller;
    const N: u32 = 1_048_576;
    println!("\ncontroller at scale (filter-ctl run, interval 1 s, capacities.sources {N})");
    println!(
        "{:>10} {:>10} {:>10} {:>16} {:>14} {:>10}",
        "sources", "offenders", "promoted", "CPU ms/interval", "longest cycle", "RSS MiB"
    );
    let c = Controller::start(&format!(
        "interval: 1s\ntrack_min_packets: 1\ncapacities: {{ sources: {N} }}\n"
    ));
    let pid = c.pid().expect("running");
    let caps = filter_ctl::policy::Capacities {
        sources: N,
        ..filter_ctl::policy::Capacities::default()
    };
    let mut copy = loader::load_with(Some(&c.pin), &caps).expect("a second copy on the pins");
    let prog = loader::program(&mut copy).unwrap();
    let mut filled = 0u32;
    let mut base = 0x0b00_0000u32;
    for (target, offenders) in [(65_536u32, 0u32), (N, 0), (N, 1_000), (N, 10_000)] {
        fill_sources(prog, target - filled, filled);
        filled = target;
        // Measured from here: the cycles that judge and promote the
        // offenders are in the figures.
        let cpu0 = cpu_ticks(pid);
        let status0 = c.status();
        let (cycles0, promoted0) = (
            status0["cycles"].as_u64().unwrap(),
            status0["promotions"].as_u64().unwrap(),
        );
        // Offenders: 300 SYNs each (over the default 200/s) in one window.
        let mut frame = Packet::tcp("100.64.0.1", SYN).build();
        for i in 0..offenders {
            frame[26..30].copy_from_slice(&(base + i).to_be_bytes());
            prog.test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat: 300,
                ..TestRunOptions::default()
            })
            .unwrap();
        }
        base += offenders;
        let longest = watch_cycles(&c, cycles0 + 4);
        let status = c.status();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let cycles = status["cycles"].as_u64().unwrap() - cycles0;
        let cpu_ms = (cpu_ticks(pid) - cpu0) as f64 * 1e3 / hz / cycles as f64;
        println!(
            "{:>10} {offenders:>10} {:>10} {cpu_ms:>16.1} {longest:>14.1} {:>10.1}",
            status["tracked_sources"].as_u64().unwrap(),
            status["promotions"].as_u64().unwrap() - promoted0,
            rss_mib(pid)
        );
    }
}

/// Waits until `c` has run `until` cycles; the longest of them, ms (its
/// own timing, polled every 200 ms: each `status` costs it a little).
fn watch_cycles(c: &filter_tests::controller::Controller, until: u64) -> f64 {
    let mut longest = 0f64;
    let mut seen = 0;
    loop {
        let s = c.status();
        let n = s["cycles"].as_u64().unwrap();
        if n != seen {
            seen = n;
            longest = longest.max(s["last_cycle_ms"].as_f64().unwrap());
        }
        if n >= until {
            return longest;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// What the receiving end of the rig's attacker veth runs in each
/// `--veth` case.
#[derive(Clone, Copy, Debug)]
enum Receiver {
    BareDrop,
    FilterExact,
    FilterCidr,
    Nftables,
    XdpFilter,
}

/// The receiver's CPU per packet of a one-source SYN flood over veth
/// (the rig's generator: XDP_TX of live frames), for each [`Receiver`].
/// The receive side runs in NET_RX softirq (the veth peer's NAPI); the
/// kernel's tick accounting samples it into /proc/stat's `softirq`, summed
/// over CPUs here. Statistical (ticks), hence floods of some seconds.
fn veth_receiver() {
    use filter_tests::{attack, netns::sh, rig::*};
    const PACKETS: u64 = 4_000_000;
    println!("\nveth receiver, one-source SYN flood of {PACKETS} packets (softirq CPU, ns/packet)");
    println!(
        "{:<36} {:>12} {:>12} {:>10}",
        "receiver", "ns/packet", "Mpps sent", "ratio"
    );
    let rig = Rig::unique();
    // NAPI on the receiving veth without an XDP program (the nftables
    // case): XDP_TX frames from the generator reach the peer only then.
    sh(&[
        "ip",
        "netns",
        "exec",
        &rig.srv.name,
        "ethtool",
        "-K",
        SRV_ATT_IF,
        "gro",
        "on",
    ]);
    let mut bare = None;
    for case in [
        Receiver::BareDrop,
        Receiver::FilterExact,
        Receiver::FilterCidr,
        Receiver::Nftables,
        Receiver::XdpFilter,
    ] {
        let srv = rig.srv.name.clone();
        let setup = rig.srv.run(move || receiver_up(case, &srv));
        let Some(held) = setup else {
            println!("{:<36} skipped", format!("{case:?}"));
            continue;
        };
        let soft0 = softirq_ticks();
        let mut spec = attack::rig_spec(
            attack::Kind::Syn,
            "10.200.1.1",
            0,
            std::time::Duration::from_secs(20),
        );
        spec.count = PACKETS;
        let report = rig.att.run(move || attack::run(&spec)).expect("flood");
        let soft = softirq_ticks() - soft0;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let ns = soft as f64 * 1e9 / hz / report.sent as f64;
        let base = *bare.get_or_insert(ns);
        println!(
            "{:<36} {ns:>12.1} {:>12.2} {:>9.2}x",
            format!("{case:?}"),
            report.sent as f64 / report.elapsed.as_secs_f64() / 1e6,
            ns / base
        );
        let srv = rig.srv.name.clone();
        rig.srv.run(move || receiver_down(case, &srv, held));
    }
}

/// Sets the case up on the server's attacker-side veth; None if this
/// machine cannot (a tool missing). The value keeps programs loaded.
fn receiver_up(case: Receiver, ns: &str) -> Option<Option<Ebpf>> {
    use filter_tests::rig::SRV_ATT_IF;
    let attach = |ebpf: &mut Ebpf, name: &str| {
        let ifindex = loader::if_index(SRV_ATT_IF).unwrap();
        let prog: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        prog.attach(ifindex, aya::programs::XdpMode::Driver)
            .expect("attach");
    };
    let entry = new_entry(list_reason::ADMIN, None, "bench");
    match case {
        Receiver::BareDrop => {
            let mut ebpf = Ebpf::load(BARE_DROP_OBJECT).unwrap();
            let prog: &mut Xdp = ebpf.program_mut("bare_drop").unwrap().try_into().unwrap();
            prog.load().unwrap();
            attach(&mut ebpf, "bare_drop");
            Some(Some(ebpf))
        }
        Receiver::FilterExact | Receiver::FilterCidr => {
            let mut ebpf = loader::load(None).unwrap();
            let mut maps = Maps::from_ebpf(&mut ebpf).unwrap();
            maps.set_config(&Config::default()).unwrap();
            let net = match case {
                Receiver::FilterExact => "10.200.1.1",
                _ => "10.200.1.0/24",
            };
            maps.insert(ListKind::Block, parse_net(net).unwrap(), &entry)
                .unwrap();
            attach(&mut ebpf, filter_common::PROGRAM_NAME);
            Some(Some(ebpf))
        }
        Receiver::Nftables => {
            let rules = format!(
                "table netdev bench {{\n  chain ingress {{\n    type filter hook ingress device \"{SRV_ATT_IF}\" priority 0;\n    ip saddr 10.200.1.0/24 drop\n  }}\n}}\n"
            );
            run_ok("nft", &["-f", "-"], Some(&rules), ns).then_some(None)
        }
        Receiver::XdpFilter => {
            let ok = run_ok(
                "xdp-filter",
                &["load", "--mode", "native", SRV_ATT_IF],
                None,
                ns,
            ) && run_ok(
                "xdp-filter",
                &["ip", "--mode", "src", "10.200.1.1"],
                None,
                ns,
            );
            ok.then_some(None)
        }
    }
}

fn receiver_down(case: Receiver, ns: &str, held: Option<Ebpf>) {
    drop(held);
    match case {
        Receiver::Nftables => {
            run_ok("nft", &["delete", "table", "netdev", "bench"], None, ns);
        }
        Receiver::XdpFilter => {
            run_ok(
                "xdp-filter",
                &["unload", filter_tests::rig::SRV_ATT_IF],
                None,
                ns,
            );
        }
        _ => {}
    }
}

/// Runs a tool (already inside the namespace `_ns`); false if it is
/// missing or fails (said on stderr).
fn run_ok(tool: &str, args: &[&str], stdin: Option<&str>, _ns: &str) -> bool {
    use std::io::Write as _;
    let child = std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("{tool}: not installed");
        return false;
    };
    if let Some(text) = stdin {
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// Softirq time of all CPUs, in clock ticks (/proc/stat, first line).
fn softirq_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<&str> = stat.lines().next().unwrap().split_whitespace().collect();
    // cpu user nice system idle iowait irq softirq ...
    cpu[7].parse().unwrap()
}

/// One SYN from each of `n` sources, 10.0.0.0 + `base` upwards, through
/// `prog` (tracked at once when the gate is off).
fn fill_sources(prog: &Xdp, n: u32, base: u32) {
    let mut frame = Packet::tcp("100.64.0.1", SYN).build();
    for i in 0..n {
        frame[26..30].copy_from_slice(&(0x0a00_0000 + base + i).to_be_bytes());
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        })
        .unwrap();
    }
}

/// Loads one of Debian's xdp-filter objects; its maps ask to be pinned, so
/// they go to a private bpffs.
fn load_xdp_filter(obj: &str, pins: &BpfFs) -> Result<Ebpf, String> {
    let path = format!("/usr/lib/x86_64-linux-gnu/bpf/{obj}.o");
    let dir = pins.path(obj);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&dir)
        .load_file(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
    let prog: &mut Xdp = ebpf
        .program_mut(obj)
        .ok_or_else(|| format!("{path}: no program {obj} (has {names:?})"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| format!("{path}: {e}"))?;
    Ok(ebpf)
}

/// Mean ns per run of `repeat` runs on one frame, as the kernel measured it.
fn hot_ns(prog: &Xdp, data: &[u8]) -> f64 {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(data),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })
        .expect("test_run");
    r.duration.as_nanos() as f64
}

/// Mean kernel-measured ns per frame, each frame run once.
fn flood_ns(prog: &Xdp, frames: &[Vec<u8>]) -> f64 {
    let total: u128 = frames
        .iter()
        .map(|f| {
            prog.test_run(TestRunOptions {
                data_in: Some(f),
                ..TestRunOptions::default()
            })
            .expect("test_run")
            .duration
            .as_nanos()
        })
        .sum();
    total as f64 / frames.len() as f64
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[ROUNDS / 2]
}
