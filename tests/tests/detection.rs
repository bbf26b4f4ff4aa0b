//! Telling legitimate traffic from floods, end to end: the real controller
//! at the default policy in the namespace rig, real TCP clients doing what
//! busy legitimate clients do (a bulk download, hundreds of parallel
//! connections), and bounded floods, some forged in the client's name.
//!
//! "Within N intervals" is counted on the controller's own cycle counter.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use filter_tests::{
    attack::Kind,
    controller::Controller,
    netns::connect_to,
    rig::{CLI_IP, SRV_CLI_IP},
    traffic::{self, Acceptor},
};
use serde_json::Value;

fn srv(port: u16) -> SocketAddr {
    format!("{SRV_CLI_IP}:{port}").parse().unwrap()
}

/// The server's address on the attacker's side.
fn srv_att(port: u16) -> SocketAddr {
    format!("{}:{port}", filter_tests::rig::SRV_ATT_IP)
        .parse()
        .unwrap()
}

/// The client's row in `list sources`.
fn client_row(c: &Controller) -> Value {
    let rows = c.json(&["list", "sources", "-n", "0", "--json"]);
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == format!("{CLI_IP}/32"))
        .cloned()
        .unwrap_or_else(|| panic!("client not tracked: {rows}"))
}

fn promotions(c: &Controller) -> Vec<Value> {
    c.audit_events()
        .into_iter()
        .filter(|e| e["event"] == "promote")
        .collect()
}

/// Polls until `source` is promoted (10 s at most); returns the audit
/// record and how many cycles it took from `cycles0`.
fn wait_promoted(c: &Controller, source: &str, cycles0: u64) -> (Value, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = promotions(c)
            .into_iter()
            .find(|p| p["source"] == format!("{source}/32"))
        {
            let cycles = c.status()["cycles"].as_u64().unwrap() - cycles0;
            return (p, cycles);
        }
        assert!(
            Instant::now() < deadline,
            "{source} not promoted: {:?}\n{}",
            promotions(c),
            c.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bulk_download_is_never_promoted_nor_limited() {
    filter_tests::require_root();
    let c = Controller::start("");
    let _server = Acceptor::bulk(&c.rig.srv, srv(9000), Duration::from_secs(10));
    let t = traffic::download(&c.rig.cli, srv(9000), Duration::from_secs(15))
        .join()
        .unwrap();
    eprintln!(
        "download: {} MB in {:.1} s ({:.0} Mbit/s)",
        t.bytes / 1_000_000,
        t.elapsed.as_secs_f64(),
        t.mbit_per_s()
    );
    assert!(!t.failed, "{t:?}");
    assert!(t.elapsed >= Duration::from_secs(10), "{t:?}");
    let row = client_row(&c);
    eprintln!("client: {row}");
    assert_eq!(c.status()["promotions"], 0, "{:?}", promotions(&c));
    assert!(c.blocked().is_empty());
    assert_eq!(row["rate_limited"], 0, "{row}");
    // Every ACK of the download belongs to its connection (how many there
    // are depends on the machine's speed: only that the download ran).
    let in_conn = row["in_connection"].as_u64().unwrap();
    let packets = row["packets"].as_u64().unwrap();
    assert!(in_conn > 10_000, "{row}");
    assert!(in_conn + 10 >= packets, "{row}");
    assert!(row["ack"].as_u64().unwrap() < 10, "{row}");
}

#[test]
fn two_hundred_parallel_connections_in_rounds_are_never_promoted() {
    filter_tests::require_root();
    let c = Controller::start("");
    let _server = Acceptor::request_response(&c.rig.srv, srv(9001));
    let mut ok = 0;
    for round in 0..3 {
        if round > 0 {
            thread::sleep(Duration::from_secs(1));
        }
        ok += traffic::parallel_requests(&c.rig.cli, srv(9001), 200);
    }
    // Two more intervals for the controller to judge the last round.
    thread::sleep(Duration::from_millis(2100));
    let row = client_row(&c);
    eprintln!("client: {row}");
    assert_eq!(ok, 600, "requests answered");
    assert_eq!(c.status()["promotions"], 0, "{:?}", promotions(&c));
    assert_eq!(row["rate_limited"], 0, "{row}");
    assert!(row["new_connections"].as_u64().unwrap() >= 590, "{row}");
    assert_eq!(row["empty_connections"], 0, "{row}");
}

#[test]
fn stray_ack_rst_and_fin_floods_are_promoted_while_a_transfer_goes_on() {
    filter_tests::require_root();
    let c = Controller::start("");
    let _server = Acceptor::bulk(&c.rig.srv, srv(9000), Duration::from_secs(12));
    let dl = traffic::download(&c.rig.cli, srv(9000), Duration::from_secs(20));
    for (kind, src, reason) in [
        (Kind::Ack, "10.200.4.1", "ack_flood"),
        (Kind::Rst, "10.200.4.2", "rst_flood"),
        (Kind::Fin, "10.200.4.3", "fin_flood"),
    ] {
        let cycles0 = c.status()["cycles"].as_u64().unwrap();
        let f = c.flood(kind, src, 20_000, 3);
        let (p, cycles) = wait_promoted(&c, src, cycles0);
        assert!(cycles <= 2, "{reason}: promoted after {cycles} intervals");
        assert_eq!(p["reason"], reason);
        assert_eq!(p["action"], "restrict");
        f.join().unwrap();
    }
    let t = dl.join().unwrap();
    eprintln!("transfer during the floods: {t:?}");
    assert!(!t.failed && t.elapsed >= Duration::from_secs(12), "{t:?}");
    assert!(t.bytes > 100_000_000, "{t:?}");
    let row = client_row(&c);
    assert_eq!(row["rate_limited"], 0, "{row}");
    assert_eq!(promotions(&c).len(), 3, "{:?}", promotions(&c));
}

#[test]
fn a_random_source_ack_flood_never_promotes_the_legit_client() {
    filter_tests::require_root();
    let c = Controller::start("");
    let _server = Acceptor::bulk(&c.rig.srv, srv(9000), Duration::from_secs(5));
    let dl = traffic::download(&c.rig.cli, srv(9000), Duration::from_secs(10));
    let report = c.flood(Kind::Ack, "10.200.0.0/16", 0, 4).join().unwrap();
    let t = dl.join().unwrap();
    thread::sleep(Duration::from_millis(1100));
    eprintln!("flood {report:?} ({:.0} pps); transfer {t:?}", report.pps());
    assert!(report.sent > 100_000, "{report:?}");
    assert!(!t.failed, "{t:?}");
    assert!(
        !promotions(&c)
            .iter()
            .any(|p| p["source"] == format!("{CLI_IP}/32")),
        "{:?}",
        promotions(&c)
    );
    assert_eq!(client_row(&c)["rate_limited"], 0);
}

#[test]
fn a_port_scan_is_promoted_as_port_scan() {
    filter_tests::require_root();
    // The one setting the default cannot know: which ports are open.
    let c = Controller::start("ports: { tcp: auto }\n");
    let _server = Acceptor::request_response(&c.rig.srv, srv(9001));
    let cycles0 = c.status()["cycles"].as_u64().unwrap();
    let scanner = "10.200.5.5";
    // 5000 SYNs to random ports: far more than 500 distinct ones.
    let f = c.flood(Kind::Scan, scanner, 2_500, 2);
    let (p, cycles) = wait_promoted(&c, scanner, cycles0);
    assert!(cycles <= 2, "promoted after {cycles} intervals");
    assert_eq!(p["reason"], "port_scan");
    assert_eq!(
        (p["action"].as_str(), p["scope"].as_str()),
        (Some("restrict"), Some("syn"))
    );
    f.join().unwrap();
    assert!(c.stat("closed_port") > 500);
    // A client using the open port is untouched.
    assert_eq!(traffic::parallel_requests(&c.rig.cli, srv(9001), 20), 20);
    assert_eq!(c.status()["promotions"], 1);
}

#[test]
fn packets_forged_in_the_clients_name_never_cut_its_connections() {
    filter_tests::require_root();
    let c = Controller::start("");
    let _server = Acceptor::bulk(&c.rig.srv, srv(9000), Duration::from_secs(8));
    let dl = traffic::download(&c.rig.cli, srv(9000), Duration::from_secs(15));
    thread::sleep(Duration::from_millis(300));
    // SYN-ACKs and stray RSTs "from" the client, sent by the attacker.
    let a = c.flood(Kind::SynAck, CLI_IP, 20_000, 3);
    let b = c.flood(Kind::Rst, CLI_IP, 20_000, 3);
    a.join().unwrap();
    b.join().unwrap();
    thread::sleep(Duration::from_millis(1100));
    // The client's address is restricted on what was forged, no more.
    let entries = c.json(&["list", "blocked", "--json"]);
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["net"] == format!("{CLI_IP}/32"))
        .cloned()
        .unwrap_or_else(|| panic!("forged floods not caught: {entries}"));
    assert_eq!(entry["scope"], "syn_ack,rst", "{entry}");
    // Its connection went on to the end, and it still connects.
    let t = dl.join().unwrap();
    eprintln!("transfer under forged floods: {t:?}");
    assert!(!t.failed && t.elapsed >= Duration::from_secs(8), "{t:?}");
    let dst = srv(9000);
    let ok = (0..10)
        .filter(|_| connect_to(&c.rig.cli, CLI_IP, dst, Duration::from_secs(2)).is_ok())
        .count();
    assert_eq!(ok, 10);
    assert_eq!(c.stat("blocked_exact"), 0);
    // An admin block covering the restriction lifts it (one entry, the
    // block, is then the one the kernel matches), and says so.
    c.ctl_ok(&["block", "10.77.2.0/24", "--reason", "test"]);
    assert_eq!(c.blocked(), ["10.77.2.0/24"]);
    let lifted = c
        .audit_events()
        .into_iter()
        .find(|e| e["event"] == "restriction_lifted")
        .expect("audited");
    assert_eq!(
        (lifted["net"].as_str(), lifted["inside"].as_str()),
        (Some("10.77.2.2/32"), Some("10.77.2.0/24"))
    );
}

#[test]
fn fragmented_syn_and_payload_ack_floods_are_caught_like_their_plain_forms() {
    filter_tests::require_root();
    let c = Controller::start("");
    for (kind, src, reason, scope) in [
        (Kind::FragSyn, "10.200.6.6", "unparsed_flood", "unparsed"),
        (Kind::AckData, "10.200.7.7", "ack_flood", "ack"),
    ] {
        let cycles0 = c.status()["cycles"].as_u64().unwrap();
        let f = c.flood(kind, src, 20_000, 3);
        let (p, cycles) = wait_promoted(&c, src, cycles0);
        assert!(cycles <= 2, "{reason}: promoted after {cycles} intervals");
        assert_eq!(
            (p["reason"].as_str(), p["scope"].as_str()),
            (Some(reason), Some(scope))
        );
        f.join().unwrap();
    }
    assert!(c.stat("restricted") > 10_000);
}

#[test]
fn a_source_holding_idle_connections_is_blocked() {
    filter_tests::require_root();
    let c = Controller::start("interval: 500ms\nconnections: { idle_after: 2s }\n");
    let _server = Acceptor::request_response(&c.rig.srv, srv_att(9001));
    let attacker = filter_tests::rig::ATT_IP;
    let ns = filter_tests::netns::NetNs::existing(&c.rig.att.name);
    let dst = srv_att(9001);
    // 150 connections opened and never used, held for 4 s.
    let holder = thread::spawn(move || {
        ns.run(move || {
            let held: Vec<_> = (0..150)
                .filter_map(|_| {
                    std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(2)).ok()
                })
                .collect();
            let n = held.len();
            thread::sleep(Duration::from_secs(4));
            n
        })
    });
    let cycles0 = c.status()["cycles"].as_u64().unwrap();
    let (p, _) = wait_promoted(&c, attacker, cycles0);
    assert_eq!(holder.join().unwrap(), 150);
    assert_eq!(p["reason"], "idle_connections");
    assert_eq!(
        (p["action"].as_str(), p["scope"].as_str()),
        (Some("block"), Some("all"))
    );
    assert!(p["rate"].as_f64().unwrap() > 100.0, "{p}");
    // A busy client on the same port is not.
    let _answers = Acceptor::request_response(&c.rig.srv, srv(9002));
    assert_eq!(traffic::parallel_requests(&c.rig.cli, srv(9002), 150), 150);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.status()["promotions"], 1, "{:?}", promotions(&c));
}

#[test]
fn a_source_trickling_into_many_connections_is_blocked_when_slow_connections_is_set() {
    filter_tests::require_root();
    // Off by default (long-poll and WebSocket clients look the same at
    // layer 4): set here, with short windows to keep the test short.
    let c = Controller::start(
        "interval: 500ms\nconnections: { slow_after: 2s, slow_rate: 100 }\nthresholds: { slow_connections: 10 }\n",
    );
    let _server = Acceptor::request_response(&c.rig.srv, srv_att(9001));
    let ns = filter_tests::netns::NetNs::existing(&c.rig.att.name);
    let dst = srv_att(9001);
    // 20 connections, one header byte each every 500 ms: Slowloris.
    let trickler = thread::spawn(move || {
        ns.run(move || {
            let mut conns: Vec<_> = (0..20)
                .filter_map(|_| {
                    std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(2)).ok()
                })
                .collect();
            for _ in 0..10 {
                for s in &mut conns {
                    let _ = std::io::Write::write_all(s, b"X");
                }
                thread::sleep(Duration::from_millis(500));
            }
            conns.len()
        })
    });
    let cycles0 = c.status()["cycles"].as_u64().unwrap();
    let (p, _) = wait_promoted(&c, filter_tests::rig::ATT_IP, cycles0);
    assert_eq!(p["reason"], "slow_connections");
    assert_eq!(p["action"], "block");
    assert_eq!(trickler.join().unwrap(), 20);
    // A download (the host sends far more than it gets) is never slow.
    let _bulk = Acceptor::bulk(&c.rig.srv, srv(9000), Duration::from_secs(4));
    let t = traffic::download(&c.rig.cli, srv(9000), Duration::from_secs(6))
        .join()
        .unwrap();
    assert!(!t.failed, "{t:?}");
    assert_eq!(c.status()["promotions"], 1, "{:?}", promotions(&c));
}

#[test]
fn ten_thousand_offenders_in_one_interval_are_all_promoted_none_lost() {
    filter_tests::require_root();
    let c = Controller::start("track_min_packets: 1\nthresholds: { syn: 5 }\n");
    let cycles0 = c.status()["cycles"].as_u64().unwrap();
    // 16 384 random sources in a /18, about 18 SYNs a second each, for 3 s:
    // all of them cross the threshold in the first interval.
    let report = c
        .flood(Kind::Syn, "10.200.0.0/18", 300_000, 3)
        .join()
        .unwrap();
    // Two more cycles judge the last complete window.
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = c.status()["cycles"].as_u64().unwrap() + 2;
    while c.status()["cycles"].as_u64().unwrap() < done {
        assert!(Instant::now() < deadline, "no cycles: {}", c.log());
        thread::sleep(Duration::from_millis(100));
    }
    // A 3 s flood spans at most four windows: a source counted for 21
    // SYNs or more had 6 or more, over 5/s, in one of them.
    let rows = c.json(&["list", "sources", "-n", "0", "--json"]);
    let heavy: std::collections::HashSet<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["syn"].as_u64().unwrap() >= 21)
        .map(|r| r["source"].as_str().unwrap().to_owned())
        .collect();
    let promoted: std::collections::HashSet<String> = promotions(&c)
        .iter()
        .map(|p| p["source"].as_str().unwrap().to_owned())
        .collect();
    let status = c.status();
    println!(
        "flood: {} packets; {} heavy sources, {} promoted; events {}, lost {}, full scans {}, cycles {}",
        report.sent,
        heavy.len(),
        promoted.len(),
        status["events"],
        status["events_lost"],
        status["full_scans"],
        status["cycles"].as_u64().unwrap() - cycles0,
    );
    assert!(heavy.len() >= 10_000, "only {} heavy sources", heavy.len());
    let missing: Vec<&String> = heavy.difference(&promoted).collect();
    assert!(
        missing.is_empty(),
        "{} of {} offenders not promoted, e.g. {:?}",
        missing.len(),
        heavy.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    // Each one restricted, never blocked: a random source is forgeable.
    assert!(promotions(&c)
        .iter()
        .all(|p| p["action"] == "restrict" && p["reason"] == "syn_flood"));
}
