use clap::{Args, ValueEnum};
use filter_common::SourceCounters;
use serde::Serialize;

use super::{human_secs, print_json, Global};
use crate::{
    kernel::maps::{ListKind, Maps},
    model::addr::source_net,
    model::clock,
};

/// Show the blocklist, the allowlist or the tracked sources.
///
/// Example: filter-ctl list sources --sort syn -n 20 --json
#[derive(Debug, Args)]
pub struct List {
    /// What to list.
    #[arg(value_enum, default_value_t = What::Blocked)]
    what: What,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// For sources: how many to show (0 = all).
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// For sources: sort key, largest first.
    #[arg(long, value_enum, default_value_t = SortKey::Packets)]
    sort: SortKey,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum What {
    Blocked,
    Allowed,
    Sources,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SortKey {
    Packets,
    Bytes,
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    Unparsed,
    InConnection,
    NewConnections,
    EmptyConnections,
    ClosedPorts,
    RateLimited,
}

/// Class counters other than `syn` count stray packets only (matching no
/// connection of the host).
#[derive(Serialize)]
struct SourceRow {
    source: String,
    syn: u64,
    syn_ack: u64,
    ack: u64,
    rst: u64,
    fin: u64,
    unparsed: u64,
    /// Packets of the host's connections.
    in_connection: u64,
    /// Completed handshakes.
    new_connections: u64,
    /// Connections closed before the source sent data.
    empty_connections: u64,
    /// SYNs and datagrams to closed ports.
    closed_ports: u64,
    /// Packets dropped by the source's rate limits.
    rate_limited: u64,
    packets: u64,
    bytes: u64,
    /// Seconds since the source was first / last counted.
    first_seen_s_ago: f64,
    last_seen_s_ago: f64,
}

impl List {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let maps = Maps::from_pins(&g.pin_dir)?;
        match self.what {
            What::Blocked => self.lists(&maps, ListKind::Block),
            What::Allowed => self.lists(&maps, ListKind::Allow),
            What::Sources => self.sources(&maps),
        }
    }

    fn lists(&self, maps: &Maps, list: ListKind) -> anyhow::Result<()> {
        let entries = maps.entries(list)?;
        if self.json {
            return print_json(&entries);
        }
        if entries.is_empty() {
            println!("(empty)");
            return Ok(());
        }
        println!(
            "{:<43} {:<6} {:<9} {:<12} {:<20} {:<22} NOTE",
            "NETWORK", "MATCH", "REASON", "DROPS", "EXPIRES", "ADDED (UTC)"
        );
        for e in entries {
            let expires = match (e.expired, e.expires_in_s) {
                (true, _) => "expired".to_owned(),
                (false, None) => "never".to_owned(),
                (false, Some(s)) => format!("in {}", human_secs(s)),
            };
            let added = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.added_unix_s),
            );
            println!(
                "{:<43} {:<6} {:<9} {:<12} {:<20} {:<22} {}",
                e.net.to_string(),
                e.matches,
                e.reason,
                e.scope,
                expires,
                added.to_string(),
                e.note
            );
        }
        Ok(())
    }

    fn sources(&self, maps: &Maps) -> anyhow::Result<()> {
        let prefix = maps.config()?.ipv6_prefix_len.clamp(1, 128) as u8;
        let mut rows = maps.sources()?;
        let key = |c: &SourceCounters| match self.sort {
            SortKey::Packets => c.packets,
            SortKey::Bytes => c.bytes,
            SortKey::Syn => c.syn,
            SortKey::SynAck => c.syn_ack,
            SortKey::Ack => c.ack,
            SortKey::Rst => c.rst,
            SortKey::Fin => c.fin,
            SortKey::Unparsed => c.unparsed,
            SortKey::InConnection => c.in_conn,
            SortKey::NewConnections => c.new_conns,
            SortKey::EmptyConnections => c.empty_conns,
            SortKey::ClosedPorts => c.closed_ports,
            SortKey::RateLimited => c.limited,
        };
        rows.sort_by(|a, b| key(&b.1).cmp(&key(&a.1)).then(a.0.cmp(&b.0)));
        if self.limit > 0 {
            rows.truncate(self.limit);
        }
        let now = clock::monotonic_ns();
        let ago = |ns: u64| now.saturating_sub(ns) as f64 / 1e9;
        let rows: Vec<SourceRow> = rows
            .into_iter()
            .map(|(k, c)| SourceRow {
                source: source_net(&k, prefix).to_string(),
                syn: c.syn,
                syn_ack: c.syn_ack,
                ack: c.ack,
                rst: c.rst,
                fin: c.fin,
                unparsed: c.unparsed,
                in_connection: c.in_conn,
                new_connections: c.new_conns,
                empty_connections: c.empty_conns,
                closed_ports: c.closed_ports,
                rate_limited: c.limited,
                packets: c.packets,
                bytes: c.bytes,
                first_seen_s_ago: ago(c.first_seen_ns),
                last_seen_s_ago: ago(c.last_seen_ns),
            })
            .collect();
        if self.json {
            return print_json(&rows);
        }
        if rows.is_empty() {
            println!("(no tracked sources)");
            return Ok(());
        }
        println!("(SYN-ACK, ACK, RST, FIN: stray packets, matching no connection of this host)");
        println!(
            "{:<43} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>12} {:>14} {:>9}",
            "SOURCE",
            "SYN",
            "SYN-ACK",
            "ACK",
            "RST",
            "FIN",
            "UNPARSED",
            "IN-CONN",
            "CONNS",
            "EMPTY",
            "CLOSED",
            "LIMITED",
            "PACKETS",
            "BYTES",
            "LAST(s)"
        );
        for r in rows {
            println!(
                "{:<43} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>12} {:>14} {:>9.1}",
                r.source,
                r.syn,
                r.syn_ack,
                r.ack,
                r.rst,
                r.fin,
                r.unparsed,
                r.in_connection,
                r.new_connections,
                r.empty_connections,
                r.closed_ports,
                r.rate_limited,
                r.packets,
                r.bytes,
                r.last_seen_s_ago
            );
        }
        Ok(())
    }
}
