//! `cargo xtask demo`: the whole product in a namespace rig, under a minute.
//!
//! Brings up the rig (attacker, client, server namespaces), starts the real
//! controller with the default policy on the server's two interfaces, runs
//! a bounded SYN flood from two attacker sources plus a spoofed
//! random-source flood, while a legitimate client keeps connecting. Prints
//! what got blocked, the drop counters and the client's success rate, then
//! tears everything down (also on failure).

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use filter_tests::{
    attack::{self, Kind},
    controller::Controller,
    netns::{connect_to, NetNs, Server},
    require_root,
    rig::{CLI_IP, SPOOF_NET, SRV_CLI_IP},
};

const FLOOD_SECS: u64 = 6;
const ATTACKERS: [&str; 2] = ["10.200.1.1", "10.200.2.2"];
const PER_ATTACKER_PPS: u64 = 25_000;
const SPOOFED_PPS: u64 = 200_000;

fn main() {
    require_root();
    let t0 = Instant::now();
    println!("== bringing up the rig and starting `filter-ctl run` with the default policy");
    let c = Controller::start("");
    let server = Server::start_on(&c.rig.srv, "0.0.0.0:8080".parse().unwrap());
    show(&c, &["status"]);

    println!(
        "\n== flood for {FLOOD_SECS}s: SYNs from {} at {PER_ATTACKER_PPS} pps each, plus {SPOOFED_PPS} pps of SYNs from random sources in {SPOOF_NET}; a legitimate client ({CLI_IP}) keeps connecting",
        ATTACKERS.join(" and ")
    );
    let mut floods: Vec<_> = ATTACKERS
        .iter()
        .map(|src| flood(&c, src, PER_ATTACKER_PPS))
        .collect();
    floods.push(flood(&c, SPOOF_NET, SPOOFED_PPS));
    let dst: SocketAddr = format!("{SRV_CLI_IP}:8080").parse().unwrap();
    let (mut ok, mut tried) = (0, 0);
    let mut latencies = Vec::new();
    let end = Instant::now() + Duration::from_secs(FLOOD_SECS);
    while Instant::now() < end {
        let t = Instant::now();
        tried += 1;
        if connect_to(&c.rig.cli, CLI_IP, dst, Duration::from_secs(2)).is_ok() {
            ok += 1;
            latencies.push(t.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let mut sent = 0;
    for f in floods {
        sent += f.join().unwrap().sent;
    }
    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();

    println!("\n== what the controller promoted (audit log: promote events)");
    for e in c.audit_events().iter().filter(|e| e["event"] == "promote") {
        // A SYN flood is evidence a forged address can produce: the
        // source's SYNs are dropped (restricted), its connections are not.
        println!(
            "  {}  {} {} at {}/s (threshold {}/s) -> {} ({}) for {}s",
            e["ts"].as_str().unwrap_or(""),
            e["source"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or(""),
            e["rate"],
            e["threshold"],
            e["action"].as_str().unwrap_or(""),
            e["scope"].as_str().unwrap_or(""),
            e["ttl_s"]
        );
    }
    show(&c, &["list", "blocked"]);
    show(&c, &["stats"]);
    show(&c, &["status"]);

    let blocked = c.blocked();
    let promoted_all = ATTACKERS
        .iter()
        .all(|a| blocked.contains(&format!("{a}/32")));
    let rate = 100.0 * ok as f64 / tried.max(1) as f64;
    println!(
        "\n== summary ({:.0}s): {sent} attack packets sent; attackers stopped (blocked or restricted): {}; legitimate client: {ok}/{tried} connections ({rate:.0}%), median connect {:.2} ms; accepted by the server: {}",
        t0.elapsed().as_secs_f64(),
        if promoted_all { "all" } else { "NOT ALL" },
        median.as_secs_f64() * 1e3,
        server.accepted_from(CLI_IP)
    );
    println!("== tearing down");
    drop(server);
    drop(c);
    if !promoted_all || rate < 95.0 {
        eprintln!(
            "demo FAILED: expected every attacker blocked or restricted and >= 95% legit success"
        );
        std::process::exit(1);
    }
}

fn flood(c: &Controller, src: &str, pps: u64) -> thread::JoinHandle<attack::Report> {
    let ns = NetNs::existing(&c.rig.att.name);
    let spec = attack::rig_spec(Kind::Syn, src, pps, Duration::from_secs(FLOOD_SECS));
    thread::spawn(move || ns.run(move || attack::run(&spec)).expect("flood"))
}

fn show(c: &Controller, args: &[&str]) {
    println!("\n$ filter-ctl {}", args.join(" "));
    let out = c.ctl(args);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}
