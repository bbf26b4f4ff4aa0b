//! `cargo xtask demo`: the data path in a namespace rig, driven through the
//! real `filter-ctl` binary.
//!
//! An attacker and a legitimate client share the client side of a veth
//! pair; the protected host runs a TCP listener with the filter attached in
//! native mode. The attacker's SYN bursts are counted, the operator blocks
//! it, and the legitimate client keeps connecting. Everything is torn down
//! at the end, also on failure.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use filter_tests::{
    netns::{connect_from, BpfFs, NetNs, Pair, Server, SERVER},
    require_root,
};
use socket2::{Domain, Socket, Type};

const ATTACKER: &str = "10.199.0.66";
const LEGIT: &str = "10.199.0.10";
/// SYNs per attacker burst (each a fresh nonblocking connect).
const BURST: usize = 300;
const LEGIT_CONNECTS: usize = 20;

fn main() {
    let ctl = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: filter-demo PATH-TO-filter-ctl"),
    );
    require_root();
    let started = Instant::now();
    let pair = Pair::new(&[ATTACKER, LEGIT]);
    let fs = BpfFs::new();
    let pin = fs.path("filter");
    let server = Server::start(&pair.server);
    println!("== rig: attacker {ATTACKER} and client {LEGIT} -> server {SERVER}");

    step(
        "attach the filter to the server's interface (native XDP)",
        &ctl,
        &pin,
        Some(&pair.server),
        &["attach", &pair.server_if, "--xdp-mode", "native"],
    );

    println!("\n== attacker sends a burst of {BURST} SYNs");
    syn_burst(&pair.client, ATTACKER, BURST);
    let ok = legit_round(&pair.client);
    println!("legit client: {ok}/{LEGIT_CONNECTS} connections completed");
    step(
        "per-source counters",
        &ctl,
        &pin,
        None,
        &["list", "sources", "--sort", "syn"],
    );

    step(
        "the operator blocks the attacker",
        &ctl,
        &pin,
        None,
        &[
            "block",
            ATTACKER,
            "--ttl",
            "10m",
            "--reason",
            "syn burst (demo)",
        ],
    );
    println!("\n== attacker sends another burst of {BURST} SYNs");
    let accepted_before = server.accepted_from(ATTACKER);
    syn_burst(&pair.client, ATTACKER, BURST);
    let attacker_connect = connect_from(&pair.client, ATTACKER, Duration::from_millis(800));
    let ok = legit_round(&pair.client);
    println!(
        "attacker full connect attempt: {}",
        match attacker_connect {
            Ok(()) => "CONNECTED (the block did not hold!)".to_owned(),
            Err(e) => format!("failed ({e})"),
        }
    );
    println!(
        "legit client: {ok}/{LEGIT_CONNECTS} connections completed ({:.0}% success)",
        100.0 * ok as f64 / LEGIT_CONNECTS as f64
    );
    step("blocklist", &ctl, &pin, None, &["list", "blocked"]);
    step("verdict counters", &ctl, &pin, None, &["stats"]);
    let leaked = server.accepted_from(ATTACKER) - accepted_before;

    step(
        "detach and remove all state",
        &ctl,
        &pin,
        None,
        &["detach", "--all", "--purge"],
    );
    println!(
        "\n== done in {:.1}s: attacker connections accepted while blocked: {leaked}; legit success {ok}/{LEGIT_CONNECTS}",
        started.elapsed().as_secs_f64()
    );
    if leaked > 0 || ok < LEGIT_CONNECTS {
        eprintln!("demo FAILED: the filter did not behave as expected");
        std::process::exit(1);
    }
}

/// Prints and runs one `filter-ctl` command (inside `ns` if given).
fn step(title: &str, ctl: &Path, pin: &Path, ns: Option<&NetNs>, args: &[&str]) {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect();
    println!("\n== {title}\n$ filter-ctl {}", shown.join(" "));
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(ctl);
            c
        }
        None => Command::new(ctl),
    };
    let status = cmd
        .env("FILTER_PIN_DIR", pin)
        .args(args)
        .status()
        .expect("running filter-ctl");
    assert!(status.success(), "filter-ctl {args:?} failed");
}

/// `n` nonblocking connects from `src`: one SYN each, never completed.
fn syn_burst(ns: &NetNs, src: &str, n: usize) {
    let src: std::net::IpAddr = src.parse().unwrap();
    ns.run(move || {
        let dst: SocketAddr = SERVER.parse().unwrap();
        let mut socks = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            s.bind(&SocketAddr::new(src, 0).into()).unwrap();
            let _ = s.connect(&dst.into()); // EINPROGRESS: the SYN is out
            socks.push(s);
        }
        // Let the SYNs leave (and SYN-ACKs come back) before closing.
        std::thread::sleep(Duration::from_millis(200));
    });
}

fn legit_round(ns: &NetNs) -> usize {
    (0..LEGIT_CONNECTS)
        .filter(|_| connect_from(ns, LEGIT, Duration::from_secs(2)).is_ok())
        .count()
}
