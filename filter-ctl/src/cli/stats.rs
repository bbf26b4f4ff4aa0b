use clap::Args;

use super::{print_json, Global};
use crate::service::ops::{Done, Op};

/// Show packet and byte totals per verdict reason since the maps were
/// created, and where the filter is attached.
///
/// Example: filter-ctl stats --json
#[derive(Debug, Args)]
pub struct Stats {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Stats {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let report = match g.call(Op::Stats)? {
            Done::Stats(report) => report,
            other => return Err(other.unexpected().into()),
        };
        if self.json {
            return print_json(&report);
        }
        let attached = if report.attached.is_empty() {
            "nothing".to_owned()
        } else {
            report.attached.join(", ")
        };
        println!("attached to: {attached}");
        println!(
            "{:<14} {:<6} {:>14} {:>16}",
            "REASON", "ACTION", "PACKETS", "BYTES"
        );
        for r in &report.reasons {
            let action = if r.drops { "drop" } else { "pass" };
            println!(
                "{:<14} {:<6} {:>14} {:>16}",
                r.reason, action, r.packets, r.bytes
            );
        }
        Ok(())
    }
}
