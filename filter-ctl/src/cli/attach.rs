use anyhow::Context as _;
use clap::Args;
use filter_common::Config;

use super::Global;
use crate::{
    kernel::loader::{self, Attached},
    policy::AttachMode,
};

/// Load the filter and attach it to one or more interfaces.
///
/// The link and maps are pinned under --pin-dir, so the filter stays
/// attached when this command exits. Maps already pinned there (from an
/// earlier attach, or a running controller) are reused with every entry and
/// their configuration intact: --ipv6-prefix and --track-min-packets only
/// apply to maps this command creates. Attaching to an interface that is
/// already attached changes nothing, unless its link runs another build's
/// program (replaced in place, never leaving the interface unfiltered) or
/// its device was re-created (attached afresh).
///
/// Example: filter-ctl attach eth0 --xdp-mode native
#[derive(Debug, Args)]
pub struct Attach {
    /// Interfaces to attach to.
    #[arg(required = true)]
    ifaces: Vec<String>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    xdp_mode: AttachMode,
    /// IPv6 sources are counted per prefix of this length (32-128).
    #[arg(long, default_value_t = filter_common::DEFAULT_IPV6_PREFIX,
          value_parser = clap::value_parser!(u32).range(crate::policy::MIN_IPV6_PREFIX as i64..=128))]
    ipv6_prefix: u32,
    /// Packets a new source must send within ~1 s before it gets its own
    /// counters (1 = count every source from its first packet).
    #[arg(long, default_value_t = filter_common::DEFAULT_TRACK_MIN_PACKETS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    track_min_packets: u32,
}

impl Attach {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        // Validate every interface before touching anything.
        for iface in &self.ifaces {
            loader::if_index(iface)?;
        }
        let config = Config {
            ipv6_prefix_len: self.ipv6_prefix,
            track_min_packets: self.track_min_packets,
            ..Config::default()
        };
        if g.pin_dir().join(filter_common::maps::CONFIG.name).exists() {
            eprintln!(
                "note: reusing the maps pinned under {} and their configuration",
                g.pin_dir().display()
            );
        }
        for iface in &self.ifaces {
            let caps = crate::policy::Capacities::default();
            match loader::attach(iface, self.xdp_mode, &g.pin_dir(), &config, &caps)
                .with_context(|| format!("attach {iface}"))?
            {
                Attached::New => println!(
                    "attached to {iface} ({} mode), pinned under {}",
                    self.xdp_mode,
                    g.pin_dir().display()
                ),
                Attached::Already => println!("{iface}: already attached, left as it is"),
                Attached::Upgraded => {
                    println!("{iface}: replaced the program of another build in place")
                }
                Attached::Reattached { why } => {
                    println!("{iface}: the pinned link was stale ({why}); attached afresh")
                }
            }
        }
        Ok(())
    }
}
