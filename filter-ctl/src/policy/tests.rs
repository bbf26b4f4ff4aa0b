use super::*;
use crate::model::metric::Metric;

fn parse(text: &str) -> Result<Policy, String> {
    Policy::parse(text, "test.yaml").map_err(|e| e.to_string())
}

#[test]
fn default_policy_text_is_the_default() {
    assert_eq!(parse(DEFAULT_POLICY).unwrap(), Policy::default());
    assert_eq!(parse("").unwrap(), Policy::default());
}

#[test]
fn good_snippets_parse() {
    let p = parse(
        "interfaces: [eth0, eth1]\nxdp_mode: skb\ninterval: 500ms\nallow: [10.0.0.0/8, \"2001:db8::/32\"]\n\
         block: [203.0.113.0/24, 198.51.100.7]\nthresholds: { syn: 50, fin: 0 }\n\
         blocking: { ttl: 90s, escalation: 1.5, max_ttl: 2h }\nrate_limit: { syn: { rate: 100, burst: 10 } }\n",
    )
    .unwrap();
    assert_eq!(p.interfaces, ["eth0", "eth1"]);
    assert_eq!(p.xdp_mode, AttachMode::Skb);
    assert_eq!(p.interval.0, Duration::from_millis(500));
    assert_eq!(p.allow.len(), 2);
    assert_eq!(p.block[1].0.to_string(), "198.51.100.7/32");
    assert_eq!(
        (p.thresholds.syn, p.thresholds.fin, p.thresholds.rst),
        (50, 0, 100)
    );
    assert_eq!(p.blocking.ttl.0, Duration::from_secs(90));
    assert_eq!(
        p.rate_limit.syn,
        Limit {
            rate: 100,
            burst: 10
        }
    );
    assert_eq!(p.rate_limit.rst, RateLimits::default().rst);
    let cfg = p.kernel_config(&p.thresholds, 2);
    assert_eq!(cfg.limits[filter_common::flag::SYN].rate, 100);
    assert_eq!(cfg.ipv6_prefix_len, 64);
}

#[test]
fn bad_snippets_name_the_field_and_line() {
    let cases = [
        (
            "interfaces: [eth0]\nthreshold: { syn: 1 }\n",
            "unknown field `threshold`",
            "line 2",
        ),
        ("thresholds:\n  syn: lots\n", "thresholds.syn", "line 2"),
        ("thresholds:\n  syn: -5\n", "thresholds.syn", "line 2"),
        ("thresholds: { sin: 5 }\n", "unknown field `sin`", "line 1"),
        // serde_yaml points at the sequence; the message quotes the bad item.
        (
            "allow:\n  - 10.0.0.0/8\n  - 10.0.0.300\n",
            "'10.0.0.300' is not an IP address or CIDR",
            "line 2",
        ),
        (
            "block: [10.0.0.5/24]\n",
            "did you mean 10.0.0.0/24",
            "line 1",
        ),
        ("interval: soon\n", "'soon' is not a duration", "line 1"),
        (
            "interval: 10ms\n",
            "interval (line 1): must be between 100ms and 60s",
            "",
        ),
        ("xdp_mode: turbo\n", "unknown variant `turbo`", "line 1"),
        (
            "\n\nblocking:\n  ttl: 1h\n  max_ttl: 10m\n",
            "blocking.max_ttl (line 5)",
            "shorter than",
        ),
        (
            "blocking: { escalation: 0.5 }\n",
            "blocking.escalation (line 1)",
            ">= 1.0",
        ),
        ("ipv6_prefix: 0\n", "ipv6_prefix (line 1)", "32 to 128"),
        ("ipv6_prefix: 1\n", "ipv6_prefix (line 1)", "32 to 128"),
        (
            "track_min_packets: 20000000\n",
            "track_min_packets (line 1)",
            "1 to 1000000",
        ),
        (
            "capacities: { block_exact: 4294967295 }\n",
            "capacities.block_exact (line 1)",
            "1 to 16777216",
        ),
        (
            "capacities: { allow: 2000000 }\n",
            "capacities.allow (line 1)",
            "1 to 1048576",
        ),
        (
            "allow: [\"::ffff:10.1.2.3\"]\n",
            "IPv4-mapped",
            "write 10.1.2.3",
        ),
        (
            "block: [\"::ffff:10.1.2.0/120\"]\n",
            "IPv4-mapped",
            "write 10.1.2.0/24",
        ),
        (
            "blocking: { ttl: 18446744073709551615s, max_ttl: 18446744073709551615s }\n",
            "blocking.ttl",
            "at most 3650 days",
        ),
        (
            "blocking: { max_ttl: 20000days }\n",
            "blocking.max_ttl",
            "at most",
        ),
        ("ipv6_prefix: 300\n", "ipv6_prefix", "line 1"),
        (
            "rate_limit:\n  syn: { rate: 5 }\n",
            "rate_limit.syn",
            "missing field `burst`",
        ),
        (
            "rate_limit:\n  rst: { rate: 5, burst: 0 }\n",
            "rate_limit.rst (line 2)",
            "burst must be at least 1",
        ),
        (
            "allow: [10.0.0.0/8]\nblock: [10.1.0.0/16]\n",
            "overlaps block entry 10.1.0.0/16",
            "allow (line 1)",
        ),
        (
            "capacities: { sources: 0 }\n",
            "capacities.sources (line 1)",
            "1 to 16777216",
        ),
        ("interfaces: [\"has space\"]\n", "not an interface name", ""),
        (
            "connections:\n  idle_after: 0s\n",
            "connections.idle_after (line 2)",
            "between 1s and 1h",
        ),
        (
            "connections: { slow_after: 2h }\n",
            "connections.slow_after (line 1)",
            "between 1s and 1h",
        ),
        (
            "connections: { slow_rate: -1 }\n",
            "connections.slow_rate",
            "",
        ),
        ("- just\n- a list\n", "invalid type", ""),
        (
            "verification: { mode: cookies }\n",
            "unknown variant `cookies`",
            "syn_cookie",
        ),
        (
            "verification: { auto_mechanism: auto }\n",
            "unknown variant `auto`",
            "escalate",
        ),
        (
            "alerts: { webhook: \"http://alerts.example.net/x\" }\n",
            "alerts.webhook",
            "https://",
        ),
        (
            "alerts: { webhook: \"https:///x\" }\n",
            "alerts.webhook",
            "https://",
        ),
        (
            "verification: { escalate_retry_rate: 0 }\n",
            "verification.escalate_retry_rate",
            "above 0",
        ),
        (
            "verification:\n  alarm_syn_rate: 100\n  calm_syn_rate: 200\n",
            "verification.alarm_syn_rate (line 2)",
            "above calm_syn_rate",
        ),
        (
            "verification: { retry_min: 2s, retry_max: 1s }\n",
            "verification.retry_max",
            "retry_min < retry_max",
        ),
        (
            "verification: { verified_ttl: 10s }\n",
            "verification.verified_ttl",
            "between 1m and 7days",
        ),
    ];
    for (text, want1, want2) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.starts_with("test.yaml: "), "{err}");
        assert!(
            err.contains(want1) && err.contains(want2),
            "{text:?} gave {err:?}"
        );
    }
}

#[test]
fn ports_are_off_auto_or_a_list_with_ranges() {
    let p = parse("ports: { tcp: [443, 22, 8000-8002, 22], udp: auto }\n").unwrap();
    assert_eq!(p.ports.tcp, PortSet::List(vec![22, 443, 8000, 8001, 8002]));
    assert_eq!(p.ports.udp, PortSet::Auto);
    let cfg = p.kernel_config(&p.thresholds, 2);
    assert_eq!(
        (cfg.tcp_ports, cfg.udp_ports, cfg.scan_ports),
        (port_mode::LIST, port_mode::AUTO, 10)
    );
    // No closed-port policy: no scan counting either.
    let off = Policy::default();
    assert_eq!(off.kernel_config(&off.thresholds, 2).scan_ports, 0);
    let p = parse("ports:\n  tcp: off\n").unwrap();
    assert_eq!(p.ports.tcp, PortSet::Off);
    for (text, want) in [
        ("ports: { tcp: [] }\n", "empty port list"),
        ("ports: { tcp: [0] }\n", "'0' is not a port"),
        ("ports: { tcp: [70000] }\n", "'70000' is not a port"),
        ("ports: { tcp: [\"9-1\"] }\n", "'9-1' is not a port"),
        ("ports: { tcp: [\"http\"] }\n", "'http' is not a port"),
        ("ports: { tcp: sometimes }\n", "'sometimes' is not a port"),
        ("ports: { sctp: auto }\n", "unknown field `sctp`"),
        (
            "thresholds: { closed_ports: 65 }\n",
            "thresholds.closed_ports (line 1): at most 64",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains(want), "{text:?} gave {err:?}");
    }
}

#[test]
fn thresholds_by_metric() {
    let mut t = Thresholds::default();
    t.set(Metric::SynAck, 7);
    assert_eq!(t.get(Metric::SynAck), 7);
    assert_eq!(t.by_metric()[filter_common::flag::SYN_ACK], 7);
    for m in Metric::ALL {
        t.set(m, 1000 + m.index() as u64);
    }
    let all = t.by_metric();
    for m in Metric::ALL {
        assert_eq!(
            (t.get(m), all[m.index()]),
            (1000 + m.index() as u64, t.get(m))
        );
    }
}
