use std::{io::IsTerminal as _, time::Duration};

use clap::{Args, ValueEnum};
use filter_common::flag;
use serde::Serialize;

use super::{print_json, Global};
use crate::{
    detect::{rates, Snapshot},
    kernel::maps::Maps,
    model::addr::source_net,
};

/// Show the busiest sources and their current rates, refreshed live.
///
/// Reads the per-source counters twice, --interval apart, and ranks sources
/// by the rate of --by. On a terminal it refreshes until Ctrl-C; with
/// --once, --json or when the output is not a terminal it prints once.
///
/// Example: filter-ctl top --by syn -n 10
#[derive(Debug, Args)]
pub struct Top {
    /// Rank by this rate.
    #[arg(long, value_enum, default_value_t = By::Pps)]
    by: By,
    /// How many sources to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Time between the two readings (and between refreshes).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Print once and exit.
    #[arg(long)]
    once: bool,
    /// Print JSON (implies --once).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    NewConnections,
    EmptyConnections,
    Pps,
}

#[derive(Serialize)]
struct Row {
    source: String,
    syn: f64,
    syn_ack: f64,
    ack: f64,
    rst: f64,
    fin: f64,
    new_connections: f64,
    empty_connections: f64,
    /// Packets of the host's connections per second.
    in_connection_pps: f64,
    pps: f64,
    limited_pps: f64,
}

impl Top {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        if self.interval < Duration::from_millis(100) {
            anyhow::bail!("--interval must be at least 100ms");
        }
        let maps = Maps::from_pins(&g.pin_dir)?;
        let prefix = maps.config()?.ipv6_prefix_len.clamp(1, 128) as u8;
        let live = !(self.once || self.json) && std::io::stdout().is_terminal();
        let mut prev = maps.snapshot()?;
        loop {
            std::thread::sleep(self.interval);
            let cur = maps.snapshot()?;
            let rows = self.rows(&prev, &cur, prefix);
            if self.json {
                return print_json(&rows);
            }
            if live {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "{} sources tracked; top {} by {}/s over {}",
                cur.sources.len(),
                rows.len(),
                self.by
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_owned()),
                humantime::format_duration(self.interval)
            );
            println!(
                "{:<43} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
                "SOURCE",
                "SYN/s",
                "SYNACK/s",
                "ACK/s",
                "RST/s",
                "FIN/s",
                "CONN/s",
                "EMPTY/s",
                "INCONN/s",
                "PKT/s",
                "LIMITED/s"
            );
            for r in &rows {
                println!(
                    "{:<43} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>10.0} {:>10.0}",
                    r.source,
                    r.syn,
                    r.syn_ack,
                    r.ack,
                    r.rst,
                    r.fin,
                    r.new_connections,
                    r.empty_connections,
                    r.in_connection_pps,
                    r.pps,
                    r.limited_pps
                );
            }
            if !live {
                return Ok(());
            }
            prev = cur;
        }
    }

    fn rows(&self, prev: &Snapshot, cur: &Snapshot, prefix: u8) -> Vec<Row> {
        let dt = Duration::from_nanos(cur.at_ns.saturating_sub(prev.at_ns));
        let secs = dt.as_secs_f64().max(1e-3);
        let mut rows: Vec<Row> = cur
            .sources
            .iter()
            .map(|(k, c)| {
                let p = prev
                    .sources
                    .get(k)
                    .filter(|p| p.first_seen_ns == c.first_seen_ns);
                let r = rates(p, c, dt);
                let (pkts, limited, in_conn) =
                    p.map_or((0, 0, 0), |p| (p.packets, p.limited, p.in_conn));
                Row {
                    source: source_net(k, prefix).to_string(),
                    syn: r[flag::SYN],
                    syn_ack: r[flag::SYN_ACK],
                    ack: r[flag::ACK],
                    rst: r[flag::RST],
                    fin: r[flag::FIN],
                    new_connections: r[crate::detect::NEW_CONNECTIONS],
                    empty_connections: r[crate::detect::EMPTY_CONNECTIONS],
                    in_connection_pps: c.in_conn.saturating_sub(in_conn) as f64 / secs,
                    pps: c.packets.saturating_sub(pkts) as f64 / secs,
                    limited_pps: c.limited.saturating_sub(limited) as f64 / secs,
                }
            })
            .collect();
        let key = |r: &Row| match self.by {
            By::Syn => r.syn,
            By::SynAck => r.syn_ack,
            By::Ack => r.ack,
            By::Rst => r.rst,
            By::Fin => r.fin,
            By::NewConnections => r.new_connections,
            By::EmptyConnections => r.empty_connections,
            By::Pps => r.pps,
        };
        rows.sort_by(|a, b| {
            key(b)
                .total_cmp(&key(a))
                .then_with(|| a.source.cmp(&b.source))
        });
        rows.truncate(self.limit);
        rows
    }
}
