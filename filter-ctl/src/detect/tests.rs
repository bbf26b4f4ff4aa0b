use super::*;
use crate::{model::addr::source_key, policy::Dur};

fn key(ip: &str) -> SourceKey {
    source_key(ip.parse().unwrap(), 64)
}

fn counters(first: u64, syn: u64, rst: u64) -> SourceCounters {
    SourceCounters {
        syn,
        rst,
        packets: syn + rst,
        first_seen_ns: first,
        ..Default::default()
    }
}

/// Counts of a complete window (the one before the running one).
fn done(counts: &[(usize, u64)]) -> Windows {
    let mut w = Windows::default();
    for &(m, n) in counts {
        w.prev[m] = n;
    }
    w
}

const SEC: Duration = Duration::from_secs(1);

/// [`detect`] over whole windows of one second, no scans, no gauges.
fn judge(t: [u64; METRIC_COUNT], entries: &[(&str, Windows)]) -> Vec<Detection> {
    let sources: Vec<(SourceKey, Windows)> = entries.iter().map(|(ip, w)| (key(ip), *w)).collect();
    detect(&sources, &[], &HashMap::new(), t, SEC)
}

#[test]
fn rates_come_from_deltas() {
    let prev = counters(5, 100, 10);
    let cur = counters(5, 400, 10);
    let r = rates(Some(&prev), &cur, Duration::from_secs(2));
    assert_eq!(r[flag::SYN], 150.0);
    assert_eq!(r[flag::RST], 0.0);
    // A new source: everything it sent arrived in this interval.
    assert_eq!(rates(None, &cur, Duration::from_secs(1))[flag::SYN], 400.0);
    // Evicted and re-created (new first-seen): counts from zero.
    let reborn = counters(9, 30, 0);
    assert_eq!(
        rates(Some(&prev), &reborn, Duration::from_secs(1))[flag::SYN],
        30.0
    );
}

/// Thresholds in [`METRICS`] order, the rest off.
fn th(v: &[u64]) -> [u64; METRIC_COUNT] {
    let mut t = [0; METRIC_COUNT];
    t[..v.len()].copy_from_slice(v);
    t
}

#[test]
fn window_counts_sum_the_cpus_on_the_same_window() {
    let cpu = |win_id: u32, win: u32, prev: u32| SourceCounters {
        win_id,
        win: [win, 0, 0, 0, 0, 0, 0, 0],
        prev_win: [prev, 0, 0, 0, 0, 0, 0, 0],
        ..Default::default()
    };
    // CPU 0 is in window 7 (its window 6 ended with 40); CPU 1 saw the
    // source last in window 6 (30), CPU 2 in window 4 (stale), CPU 3 never.
    let per_cpu = [
        cpu(7, 5, 40),
        cpu(6, 30, 99),
        cpu(4, 1000, 1000),
        cpu(0, 0, 0),
    ];
    let w = window_counts(&per_cpu, 7);
    assert_eq!((w.cur[flag::SYN], w.prev[flag::SYN]), (5, 70));
    // A window later, CPU 0's running window is the complete one.
    let w = window_counts(&per_cpu, 8);
    assert_eq!((w.cur[flag::SYN], w.prev[flag::SYN]), (0, 5));
    assert_eq!(window_of(7_500_000_000, SEC), 7);
}

#[test]
fn triggers_share_a_threshold_among_the_cpus() {
    let t = crate::policy::Thresholds {
        syn: 200,
        syn_ack: 0,
        ack: 5000,
        ..Default::default()
    };
    // Over 200/s in a 1 s window is 201 in sum: at least 101 on one of 2.
    let tr = t.triggers(SEC, 2);
    assert_eq!(
        (tr[flag::SYN], tr[flag::SYN_ACK], tr[flag::ACK]),
        (101, 0, 2501)
    );
    // Longer windows scale; one CPU needs the whole count.
    assert_eq!(t.triggers(Duration::from_millis(2500), 1)[flag::SYN], 501);
    let one = crate::policy::Thresholds {
        syn: 1,
        ..Default::default()
    };
    assert_eq!(one.triggers(Duration::from_millis(100), 64)[flag::SYN], 1);
}

#[test]
fn detects_the_class_most_over_its_threshold() {
    let t = th(&[200, 20, 5000, 100, 100]);
    let entries = [
        ("192.0.2.1", done(&[(flag::SYN, 300), (flag::RST, 500)])), // syn 1.5x, rst 5x
        ("192.0.2.2", done(&[(flag::SYN, 150), (flag::RST, 50)])),  // under both
        ("192.0.2.3", done(&[(flag::SYN, 201)])),                   // just over
    ];
    let d = judge(t, &entries);
    let got: Vec<(SourceKey, &str)> = d.iter().map(|d| (d.key, d.metric_name())).collect();
    // Every metric over its threshold, the one most over it first.
    assert_eq!(
        got,
        [
            (key("192.0.2.1"), "rst"),
            (key("192.0.2.1"), "syn"),
            (key("192.0.2.3"), "syn")
        ]
    );
    assert_eq!(d[0].rate, 500.0);
    assert_eq!(d[2].threshold, 200);
    // A threshold of 0 switches the check off.
    assert!(judge(th(&[0, 20, 5000, 0, 100]), &entries).is_empty());
    // Exactly at the threshold is not over it.
    assert!(judge(t, &[("192.0.2.4", done(&[(flag::SYN, 200)]))]).is_empty());
    // The running window counts as soon as it is over, before it ends; a
    // window of 2 s allows twice the count.
    let mut running = Windows::default();
    running.cur[flag::SYN] = 250;
    assert_eq!(judge(t, &[("192.0.2.5", running)]).len(), 1);
    let sources = [(key("192.0.2.5"), running)];
    let two = Duration::from_secs(2);
    assert!(detect(&sources, &[], &HashMap::new(), t, two).is_empty());
}

#[test]
fn connection_metrics_block_and_packet_metrics_restrict() {
    let churn = done(&[
        (flag::SYN, 10),
        (NEW_CONNECTIONS, 290),
        (EMPTY_CONNECTIONS, 280),
    ]);
    let d = judge(
        th(&[1000, 20, 5000, 100, 100, 100, 0, 50]),
        &[("192.0.2.7", churn)],
    );
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].metric_name(), d[0].rate, d[0].threshold, d[0].scope()),
        ("empty_connections", 280.0, 50, 0)
    );
    assert_eq!(d[0].reason(), "empty_connections_flood");
    // new_connections is its own metric, off unless set.
    let d = judge(
        th(&[1000, 20, 5000, 100, 100, 100, 100, 0]),
        &[("192.0.2.7", churn)],
    );
    assert_eq!((d[0].metric_name(), d[0].scope()), ("new_connections", 0));
    // A block wins over a restriction even when less far over.
    let mut both = churn;
    both.prev[flag::RST] = 100_000;
    let d = judge(
        th(&[1000, 20, 5000, 100, 100, 100, 0, 50]),
        &[("192.0.2.7", both)],
    );
    assert_eq!(
        (d[0].metric_name(), d[1].metric_name()),
        ("empty_connections", "rst")
    );
    // Packet classes restrict that class only.
    assert_eq!(scope_of(flag::ACK), flag::bit(flag::ACK));
    assert_eq!(scope_of(CLOSED_PORTS), flag::bit(flag::SYN));
}

#[test]
fn sources_holding_idle_connections_are_blocked() {
    let mut held = HashMap::new();
    held.insert(
        key("192.0.2.20"),
        Held {
            established: 300,
            idle: 150,
            slow: 0,
        },
    );
    held.insert(
        key("192.0.2.21"),
        Held {
            established: 400,
            idle: 3,
            slow: 40,
        },
    );
    let mut t = th(&[200]);
    t[IDLE_CONNECTIONS] = 100;
    let d = detect(&[], &[], &held, t, SEC);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].key, d[0].reason(), d[0].scope(), d[0].rate),
        (key("192.0.2.20"), "idle_connections".to_owned(), 0, 150.0)
    );
    assert_eq!(d[0].note(), "idle_connections 150 > 100");
    // Concurrent connections, when set, count every inbound one.
    t[CONCURRENT_CONNECTIONS] = 350;
    let d = detect(&[], &[], &held, t, SEC);
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[1].key, d[1].metric_name()),
        (key("192.0.2.21"), "concurrent_connections")
    );
}

#[test]
fn a_scan_reported_by_the_kernel_is_a_port_scan() {
    let mut t = th(&[200]);
    t[CLOSED_PORTS] = 10;
    // Reported twice (two CPUs): one detection, the widest.
    let scans = [(key("192.0.2.8"), 11), (key("192.0.2.8"), 14)];
    let d = detect(&[], &scans, &HashMap::new(), t, SEC);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].reason(), d[0].scope(), d[0].rate),
        ("port_scan".to_owned(), 1, 14.0)
    );
    assert_eq!(d[0].note(), "port_scan 14 closed ports > 10");
    t[CLOSED_PORTS] = 0;
    assert!(detect(&[], &scans, &HashMap::new(), t, SEC).is_empty());
}

#[test]
fn restrictions_add_up_and_a_block_replaces_them() {
    let c = done(&[(flag::SYN, 5000), (flag::SYN_ACK, 5000), (flag::RST, 5000)]);
    let net = |k: &SourceKey| crate::model::addr::source_net(k, 64);
    let t = th(&[100, 100, 100, 100, 100]);
    let bits = |v: &[usize]| v.iter().fold(0, |a, &i| a | flag::bit(i));
    // Everything forged at once: one promotion restricting all of it.
    let p = promotable(judge(t, &[("192.0.2.10", c)]), net, &[], &[]);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1, bits(&[flag::SYN, flag::SYN_ACK, flag::RST]));
    // Already restricted on the loudest class: the others still come.
    let had = [Listed {
        net: "192.0.2.10/32".parse().unwrap(),
        scope: bits(&[flag::SYN]),
    }];
    let p = promotable(judge(t, &[("192.0.2.10", c)]), net, &[], &had);
    assert_eq!(p[0].1, bits(&[flag::SYN, flag::SYN_ACK, flag::RST]));
    assert_ne!(p[0].2.metric, flag::SYN, "the lead adds something");
    // A metric that blocks replaces the restrictions.
    let mut churn = c;
    churn.prev[EMPTY_CONNECTIONS] = 500;
    let mut t = t;
    t[EMPTY_CONNECTIONS] = 50;
    let p = promotable(judge(t, &[("192.0.2.10", churn)]), net, &[], &had);
    assert_eq!((p.len(), p[0].1, p[0].2.metric), (1, 0, EMPTY_CONNECTIONS));
}

#[test]
fn allowlisted_blocked_and_already_restricted_sources_are_not_promoted_again() {
    let t = th(&[10, 10, 10, 10, 10]);
    let entries = [
        ("10.1.2.3", done(&[(flag::SYN, 1_000_000)])),
        ("192.0.2.9", done(&[(flag::SYN, 50)])),
        ("198.51.100.1", done(&[(flag::SYN, 50)])),
        ("203.0.113.5", done(&[(flag::SYN, 50), (flag::RST, 50)])),
        ("203.0.113.6", done(&[(flag::RST, 50)])),
    ];
    let allow: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let listed = |net: &str, scope: u32| Listed {
        net: net.parse().unwrap(),
        scope,
    };
    let syn = flag::bit(flag::SYN);
    let rst = flag::bit(flag::RST);
    let blocked = vec![
        listed("198.51.100.0/24", 0),
        // Restricted on SYN already; now over on RST too.
        listed("203.0.113.5/32", syn),
        // Restricted on RST already, and over on RST again: nothing new.
        listed("203.0.113.6/32", rst),
    ];
    let p = promotable(
        judge(t, &entries),
        |k| crate::model::addr::source_net(k, 64),
        &allow,
        &blocked,
    );
    let got: Vec<(String, u32)> = p.iter().map(|(n, s, _)| (n.to_string(), *s)).collect();
    assert_eq!(
        got,
        [
            ("192.0.2.9/32".to_owned(), syn),
            ("203.0.113.5/32".to_owned(), syn | rst)
        ]
    );
}

#[test]
fn repeat_offenders_escalate_up_to_the_cap_and_are_forgotten() {
    let b = Blocking {
        ttl: Dur::secs(600),
        escalation: 2.0,
        max_ttl: Dur::secs(3000),
        forget_after: Dur::secs(86_400),
    };
    let net: IpNet = "203.0.113.7/32".parse().unwrap();
    let other: IpNet = "203.0.113.8/32".parse().unwrap();
    let mut o = Offenders::default();
    let mut now = 1_000_000;
    let ttls: Vec<u64> = (0..4)
        .map(|_| {
            now += 700;
            o.promote(&net, now, &b).0.as_secs()
        })
        .collect();
    assert_eq!(ttls, [600, 1200, 2400, 3000]);
    assert_eq!(o.promote(&other, now, &b), (Duration::from_secs(600), 1));
    // Quiet for longer than forget_after: back to the base TTL.
    now += 86_401;
    assert_eq!(o.promote(&net, now, &b), (Duration::from_secs(600), 1));
    // Pruning drops stale histories only.
    o.prune(now + 86_000, &b);
    assert_eq!(o.0.len(), 1);
    o.prune(now + 86_402, &b);
    assert!(o.0.is_empty());
}

#[test]
fn net_index_covers_by_prefix() {
    let idx = NetIndex::new(
        ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse().unwrap()),
    );
    let covers = |n: &str| idx.covers(&n.parse().unwrap());
    assert!(covers("10.1.2.3/32") && covers("10.0.0.0/8") && covers("192.0.2.7/32"));
    assert!(covers("2001:db8:1:2::/64"));
    assert!(!covers("192.0.2.8/32") && !covers("11.0.0.1/32") && !covers("0.0.0.0/0"));
    assert!(!covers("2001:db9::/64") && !covers("2001::/16"));
}

#[test]
fn offender_history_is_bounded_keeping_the_most_recent() {
    let b = Blocking::default();
    let mut o = Offenders::default();
    for i in 0..(MAX_OFFENDERS as u64 + 500) {
        let net: IpNet = format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)
            .parse()
            .unwrap();
        o.promote(&net, 1_000_000 + i, &b);
    }
    o.prune(1_000_000 + MAX_OFFENDERS as u64 + 500, &b);
    assert_eq!(o.0.len(), MAX_OFFENDERS);
    assert!(!o.0.contains_key("10.0.0.0/32"), "the oldest went");
    assert!(o.0.contains_key(&format!(
        "10.{}.{}.{}/32",
        (MAX_OFFENDERS + 499) >> 16,
        ((MAX_OFFENDERS + 499) >> 8) & 255,
        (MAX_OFFENDERS + 499) & 255
    )));
}
