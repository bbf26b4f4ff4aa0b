use clap::Args;

use super::Global;
use crate::kernel::loader;

/// Detach the filter from interfaces.
///
/// Removes the pinned link, which detaches the program. The pinned maps
/// (blocklist, allowlist, counters) stay unless --purge is given and no
/// interface remains attached.
///
/// Example: filter-ctl detach eth0 --purge
#[derive(Debug, Args)]
pub struct Detach {
    /// Interfaces to detach from.
    #[arg(required_unless_present = "all")]
    ifaces: Vec<String>,
    /// Detach from every attached interface.
    #[arg(long, conflicts_with = "ifaces")]
    all: bool,
    /// Also delete the pinned maps once nothing is attached (all state lost).
    #[arg(long)]
    purge: bool,
}

impl Detach {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        loader::check_bpffs(&g.pin_dir())?;
        let ifaces = if self.all {
            loader::attached_interfaces(&g.pin_dir())
        } else {
            self.ifaces
        };
        for iface in &ifaces {
            loader::detach(iface, &g.pin_dir(), false)?;
            println!("detached from {iface}");
        }
        if self.purge {
            let left = loader::attached_interfaces(&g.pin_dir());
            if left.is_empty() {
                loader::purge_maps(&g.pin_dir())?;
                println!("removed pinned maps under {}", g.pin_dir().display());
            } else {
                println!("kept pinned maps: still attached to {}", left.join(", "));
            }
        }
        Ok(())
    }
}
