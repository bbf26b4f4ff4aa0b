//! Verbs that need the running controller: status, reload, set/get threshold.

use clap::{Args, Subcommand};

use super::{print_json, Global};
use crate::{
    api::client::Client,
    model::metric::Metric,
    service::ops::{Done, ErrorKind, Op},
};

/// Show the running controller: interfaces, uptime, cycle time, counts.
///
/// Exits 3 when no controller is running (the filter itself may still be
/// attached: see `filter-ctl stats`).
///
/// Example: filter-ctl status --json
#[derive(Debug, Args)]
pub struct Status {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Status {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let s = match Client::new(&g.socket()).call(&Op::Status) {
            Ok(Done::Status(s)) => s,
            Ok(other) => return Err(other.unexpected().into()),
            Err(e) if e.kind == ErrorKind::NotRunning => {
                let path = g.socket().display().to_string();
                let attached = crate::kernel::loader::attached_interfaces(&g.pin_dir());
                if self.json {
                    print_json(
                        &serde_json::json!({"running": false, "socket": path, "attached": attached}),
                    )?;
                } else {
                    println!("controller: not running (no listener on {path})");
                    println!(
                        "filter attached to: {}",
                        if attached.is_empty() {
                            "nothing".into()
                        } else {
                            attached.join(", ")
                        }
                    );
                }
                std::process::exit(3);
            }
            Err(e) => return Err(e.into()),
        };
        if self.json {
            return print_json(&s);
        }
        println!("controller: running (pid {}, up {}s)", s.pid, s.uptime_s);
        println!("policy: {}", s.policy.display());
        println!("interfaces: {} ({})", s.interfaces.join(", "), s.xdp_mode);
        if !s.lost_interfaces.is_empty() {
            println!(
                "LOST: no filter on {} (re-attached as soon as the device exists)",
                s.lost_interfaces.join(", ")
            );
        }
        println!(
            "interval: {} ms, cycles: {}, last cycle: {:.2} ms",
            s.interval_ms, s.cycles, s.last_cycle_ms
        );
        println!(
            "tracked sources: {}, blocked entries: {}",
            s.tracked_sources, s.blocked_entries
        );
        println!(
            "detection events: {}, lost: {}, full scans: {}",
            s.events, s.events_lost, s.full_scans
        );
        println!(
            "promotions: {}, expiries: {}, skipped (block list full): {}",
            s.promotions, s.expiries, s.promotions_skipped
        );
        if s.block_list_full {
            println!("BLOCK LIST FULL: new offenders are not being blocked; raise capacities.block_exact / block_net");
        }
        let v = &s.verification;
        println!(
            "verification: {} ({}), {} for {}s: {}",
            v.mode,
            v.mechanism,
            if v.active { "ON" } else { "off" },
            v.since_s,
            v.why
        );
        println!("  syn_cookie route: {}", v.route);
        println!(
            "  SYN rate {:.0}/s; cookies sent {}, first SYNs dropped {}, verified {}, \
             failed {}; {} sources verified",
            v.syn_rate,
            v.cookies_sent,
            v.dropped_unverified,
            v.passed,
            v.failed,
            v.verified_sources
        );
        if v.handed_over + v.handover_failed > 0 {
            println!(
                "  handed to listeners {}, refused by the kernel {}",
                v.handed_over, v.handover_failed
            );
        }
        println!("audit log: {}", s.audit_log.display());
        if s.access_log_write_errors > 0 {
            println!(
                "ACCESS LOG FAILING: {} API requests could not be logged",
                s.access_log_write_errors
            );
        }
        if s.audit_write_errors > 0 {
            println!(
                "AUDIT LOG FAILING: {} records could not be written (see the controller's log)",
                s.audit_write_errors
            );
        }
        Ok(())
    }
}

/// Re-read the running controller's policy file.
///
/// An invalid file changes nothing; the error says why.
///
/// Example: filter-ctl reload
#[derive(Debug, Args)]
pub struct Reload {}

impl Reload {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        match g.call(Op::Reload)? {
            Done::Reloaded { message } => println!("{message}"),
            other => return Err(other.unexpected().into()),
        }
        Ok(())
    }
}

/// Change a setting of the running controller.
#[derive(Debug, Args)]
pub struct Set {
    #[command(subcommand)]
    what: SetWhat,
}

#[derive(Debug, Subcommand)]
enum SetWhat {
    /// Set a per-source threshold (packets/s; 0 = off; `policy` = back to
    /// the policy's value). Takes effect at the next interval and survives
    /// restarts (kept in the state directory).
    ///
    /// Example: filter-ctl set threshold syn 500
    Threshold {
        /// Which threshold (see docs/detection.md).
        #[arg(value_enum)]
        name: Metric,
        /// Per second (a count for the *_connections gauges), 0 = off, or
        /// `policy`.
        value: String,
    },
    /// Set the source verification mode (off, first_syn_drop, auto; or
    /// `policy` = back to the policy's). Takes effect at once and survives
    /// restarts (kept in the state directory). See docs/verification.md.
    ///
    /// Example: filter-ctl set verification auto
    Verification {
        /// off | first_syn_drop | auto | policy
        #[arg(value_name = "MODE")]
        mode: ModeArg,
    },
}

/// A verification mode, or `policy` (None: back to the policy's).
#[derive(Clone, Debug)]
struct ModeArg(Option<crate::policy::VerifyMode>);

impl std::str::FromStr for ModeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use clap::ValueEnum as _;
        match s {
            "policy" | "default" => Ok(ModeArg(None)),
            m => crate::policy::VerifyMode::from_str(m, true)
                .map(|m| ModeArg(Some(m)))
                .map_err(|_| format!("'{m}' is not a mode: off, first_syn_drop, auto or policy")),
        }
    }
}

impl Set {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let (name, value) = match self.what {
            SetWhat::Threshold { name, value } => (name, value),
            SetWhat::Verification { mode } => {
                match g.call(Op::SetVerification { mode: mode.0 })? {
                    Done::VerificationSet { old, new } => {
                        println!("verification: {old} -> {new}")
                    }
                    other => return Err(other.unexpected().into()),
                }
                return Ok(());
            }
        };
        let value = match value.as_str() {
            "policy" | "default" => None,
            v => Some(v.parse::<u64>().map_err(|_| {
                anyhow::anyhow!(
                    "'{v}' is not a rate: give packets per second (0 = off) or `policy`"
                )
            })?),
        };
        match g.call(Op::SetThreshold {
            metric: name,
            value,
        })? {
            Done::ThresholdSet { metric, old, new } => {
                println!("threshold {}: {old} -> {new} /s", metric.name())
            }
            other => return Err(other.unexpected().into()),
        }
        Ok(())
    }
}

/// Read settings of the running controller.
#[derive(Debug, Args)]
pub struct Get {
    #[command(subcommand)]
    what: GetWhat,
}

#[derive(Debug, Subcommand)]
enum GetWhat {
    /// Show the effective per-source thresholds (packets/s).
    ///
    /// Example: filter-ctl get threshold syn --json
    Threshold {
        /// Only this one.
        #[arg(value_enum)]
        name: Option<Metric>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Get {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let GetWhat::Threshold { name, json } = self.what;
        let mut rows = match g.call(Op::Thresholds)? {
            Done::Thresholds { rows } => rows,
            other => return Err(other.unexpected().into()),
        };
        if let Some(m) = name {
            rows.retain(|r| r.name == m);
        }
        if json {
            return print_json(&rows);
        }
        println!("{:<8} {:>10} {:>10}  SOURCE", "NAME", "VALUE", "POLICY");
        for r in rows {
            let src = if r.overridden {
                "override (set threshold)"
            } else {
                "policy"
            };
            println!(
                "{:<8} {:>10} {:>10}  {src}",
                r.name.name(),
                r.value,
                r.policy
            );
        }
        Ok(())
    }
}
