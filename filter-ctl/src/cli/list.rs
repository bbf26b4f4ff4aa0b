use clap::{Args, ValueEnum};

use super::{human_secs, print_json, Global};
use crate::{
    kernel::maps::ListKind,
    service::ops::{Done, Op, SourceSort},
};

/// Show the blocklist, the allowlist, the tracked or the verified sources.
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
    #[arg(long, value_enum, default_value_t = SourceSort::Packets)]
    sort: SourceSort,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum What {
    Blocked,
    Allowed,
    Sources,
    /// Sources that passed verification, with the time left.
    Verified,
}

impl List {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        match self.what {
            What::Blocked => self.lists(g, ListKind::Block),
            What::Allowed => self.lists(g, ListKind::Allow),
            What::Sources => self.sources(g),
            What::Verified => self.verified(g),
        }
    }

    fn verified(&self, g: &Global) -> anyhow::Result<()> {
        let rows = match g.call(Op::Verified)? {
            Done::Verified { rows } => rows,
            other => return Err(other.unexpected().into()),
        };
        if self.json {
            return print_json(&rows);
        }
        if rows.is_empty() {
            println!("(no verified sources)");
            return Ok(());
        }
        println!("{:<43} EXPIRES", "SOURCE");
        for r in rows {
            println!(
                "{:<43} in {}",
                r.source.to_string(),
                human_secs(r.expires_in_s)
            );
        }
        Ok(())
    }

    fn lists(&self, g: &Global, list: ListKind) -> anyhow::Result<()> {
        let entries = match g.call(Op::List { list })? {
            Done::List { entries } => entries,
            other => return Err(other.unexpected().into()),
        };
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

    fn sources(&self, g: &Global) -> anyhow::Result<()> {
        let rows = match g.call(Op::Sources {
            sort: self.sort,
            limit: self.limit,
        })? {
            Done::Sources { rows } => rows,
            other => return Err(other.unexpected().into()),
        };
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
                r.source.to_string(),
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
