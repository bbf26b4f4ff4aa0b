use std::{io::IsTerminal as _, time::Duration};

use clap::{Args, ValueEnum as _};

use super::{print_json, Global};
use crate::service::ops::{Done, Op, TopBy};

/// Show the busiest sources and their current rates, refreshed live.
///
/// Ranks sources by the rate of --by. A running controller measures the
/// rates since its last cycle; with none, the counters are read twice,
/// --interval apart. On a terminal it refreshes every --interval until
/// Ctrl-C; with --once, --json or when the output is not a terminal it
/// prints once.
///
/// Example: filter-ctl top --by syn -n 10
#[derive(Debug, Args)]
pub struct Top {
    /// Rank by this rate.
    #[arg(long, value_enum, default_value_t = TopBy::Pps)]
    by: TopBy,
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

impl Top {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        if self.interval < Duration::from_millis(100) {
            anyhow::bail!("--interval must be at least 100ms");
        }
        let live = !(self.once || self.json) && std::io::stdout().is_terminal();
        loop {
            let asked = std::time::Instant::now();
            let report = match g.call(Op::Top {
                by: self.by,
                limit: self.limit,
                window: self.interval,
            })? {
                Done::Top(report) => report,
                other => return Err(other.unexpected().into()),
            };
            let rows = &report.rows;
            if self.json {
                return print_json(&rows);
            }
            if live {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "{} sources tracked; top {} by {}/s over {}",
                report.tracked,
                rows.len(),
                self.by
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_owned()),
                humantime::format_duration(Duration::from_millis(report.window_ms))
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
            for r in rows {
                println!(
                    "{:<43} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>10.0} {:>10.0}",
                    r.source.to_string(),
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
            // Offline the call itself took --interval; a controller answers
            // at once.
            std::thread::sleep(self.interval.saturating_sub(asked.elapsed()));
        }
    }
}
