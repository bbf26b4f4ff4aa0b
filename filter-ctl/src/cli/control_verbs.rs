//! Verbs that need the running controller: status, reload, set/get threshold.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{print_json, Global};
use crate::{
    api::client::{call, CallError},
    model::metric::Metric,
    service::ops::{Request, Response},
};

/// Sends a request and turns a refusal into an error.
pub(super) fn request(g: &Global, req: &Request) -> anyhow::Result<Value> {
    let resp: Response = call(&g.socket, req)?;
    if resp.ok {
        Ok(resp.data)
    } else {
        anyhow::bail!(resp
            .error
            .unwrap_or_else(|| "the controller refused".into()))
    }
}

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
        let s = match call(&g.socket, &Request::Status) {
            Ok(r) if r.ok => r.data,
            Ok(r) => anyhow::bail!(r.error.unwrap_or_default()),
            Err(CallError::NotRunning(path)) => {
                let attached = crate::kernel::loader::attached_interfaces(&g.pin_dir);
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
        println!(
            "controller: running (pid {}, up {}s)",
            s["pid"], s["uptime_s"]
        );
        println!("policy: {}", s["policy"].as_str().unwrap_or("?"));
        println!(
            "interfaces: {} ({})",
            join(&s["interfaces"]),
            s["xdp_mode"].as_str().unwrap_or("?")
        );
        println!(
            "interval: {} ms, cycles: {}, last cycle: {:.2} ms",
            s["interval_ms"],
            s["cycles"],
            s["last_cycle_ms"].as_f64().unwrap_or(0.0)
        );
        println!(
            "tracked sources: {}, blocked entries: {}",
            s["tracked_sources"], s["blocked_entries"]
        );
        println!(
            "promotions: {}, expiries: {}",
            s["promotions"], s["expiries"]
        );
        println!("audit log: {}", s["audit_log"].as_str().unwrap_or("?"));
        Ok(())
    }
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
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
        let v = request(g, &Request::Reload)?;
        println!("{}", v["message"].as_str().unwrap_or("reloaded"));
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
}

impl Set {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        let SetWhat::Threshold { name, value } = self.what;
        let value = match value.as_str() {
            "policy" | "default" => None,
            v => Some(v.parse::<u64>().map_err(|_| {
                anyhow::anyhow!(
                    "'{v}' is not a rate: give packets per second (0 = off) or `policy`"
                )
            })?),
        };
        let v = request(g, &Request::SetThreshold { name, value })?;
        println!(
            "threshold {}: {} -> {} /s",
            v["name"].as_str().unwrap_or("?"),
            v["old"],
            v["new"]
        );
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
        let all = request(g, &Request::GetThresholds)?;
        let mut rows: Vec<Value> = all.as_array().cloned().unwrap_or_default();
        if let Some(m) = name {
            rows.retain(|r| r["name"] == m.name());
        }
        if json {
            return print_json(&rows);
        }
        println!("{:<8} {:>10} {:>10}  SOURCE", "NAME", "VALUE", "POLICY");
        for r in rows {
            let src = if r["overridden"] == true {
                "override (set threshold)"
            } else {
                "policy"
            };
            println!(
                "{:<8} {:>10} {:>10}  {src}",
                r["name"].as_str().unwrap_or("?"),
                r["value"],
                r["policy"]
            );
        }
        Ok(())
    }
}
