//! Bounded flood generator for the namespace rig.
//!
//! Example (from the rig's attacker namespace, 5 s of spoofed SYNs):
//!   filter-attack --netns filt-att syn --src 10.200.0.0/16 --duration 5s

use std::{net::SocketAddrV4, time::Duration};

use clap::Parser;
use filter_tests::{
    attack::{self, Kind, Spec},
    rig,
};

/// Send a bounded TCP flood (stops at --count or --duration, at most 60 s).
#[derive(Parser)]
struct Args {
    /// What to send.
    #[arg(value_enum)]
    kind: Kind,
    /// Network namespace to send from.
    #[arg(long, default_value = "filt-att")]
    netns: String,
    /// Interface to send from, inside --netns.
    #[arg(long, default_value = rig::ATT_IF)]
    iface: String,
    /// Source: a CIDR for random sources in it, an address for one source.
    #[arg(long, default_value = rig::SPOOF_NET)]
    src: String,
    /// Target address and port.
    #[arg(long, default_value = "10.77.1.1:8080")]
    dst: SocketAddrV4,
    #[arg(long, default_value = rig::ATT_MAC)]
    src_mac: String,
    #[arg(long, default_value = rig::SRV_ATT_MAC)]
    dst_mac: String,
    /// Packets per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long, at most (60 s cap).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How many packets, at most.
    #[arg(long, default_value_t = attack::MAX_PACKETS)]
    count: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    filter_tests::require_root();
    let src = attack::parse_src(&a.src)?;
    let spec = Spec {
        kind: a.kind,
        iface: a.iface,
        src,
        dst: a.dst,
        src_mac: attack::parse_mac(&a.src_mac)?,
        dst_mac: attack::parse_mac(&a.dst_mac)?,
        rate: a.rate,
        duration: a.duration,
        count: a.count,
        v6: None,
    };
    let ns = filter_tests::netns::NetNs::existing(&a.netns);
    let report = ns.run(move || attack::run(&spec))?;
    println!(
        "sent {} packets in {:.2} s: {:.2} Mpps",
        report.sent,
        report.elapsed.as_secs_f64(),
        report.pps() / 1e6
    );
    Ok(())
}
