//! `block`, `unblock`, `allow`, `disallow`: edits of the lists, through the
//! service (the running controller, or offline on the pinned maps). All
//! arguments are validated before the first change, so a bad one changes
//! nothing.

use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use super::{human_secs, Global, Ttl};
use crate::{
    kernel::maps::ListKind,
    model::addr::parse_net,
    service::ops::{Done, ErrorKind, Op},
};

fn parse_all(args: &[String]) -> anyhow::Result<Vec<IpNet>> {
    args.iter()
        .map(|a| parse_net(a).map_err(anyhow::Error::from))
        .collect()
}

fn add(
    g: &Global,
    list: ListKind,
    args: &[String],
    ttl: Option<Duration>,
    reason: &str,
) -> anyhow::Result<()> {
    let verb = match list {
        ListKind::Block => "blocked",
        ListKind::Allow => "allowed",
    };
    for net in parse_all(args)? {
        let op = Op::Add {
            list,
            net,
            ttl_s: ttl.map(|t| t.as_secs()),
            reason: reason.to_owned(),
        };
        match g.call(op)? {
            Done::Added {
                net,
                ttl_s: Some(t),
            } => println!("{verb} {net} for {}", human_secs(t)),
            Done::Added { net, ttl_s: None } => println!("{verb} {net} (no expiry)"),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(())
}

fn remove(g: &Global, list: ListKind, args: &[String]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for net in parse_all(args)? {
        match g.call(Op::Remove { list, net }) {
            Ok(Done::Removed { net }) => println!("removed {net} from the {list} list"),
            Ok(other) => return Err(other.unexpected().into()),
            Err(e) if e.kind == ErrorKind::NotListed => missing.push(net.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!("not in the {list} list: {}", missing.join(", "));
    }
    Ok(())
}

/// Drop all traffic from addresses or networks.
///
/// A single address goes to the exact-match table, a CIDR to the prefix
/// table; both are checked by the XDP program on every packet, after the
/// allowlist. The entry expires in the kernel after --ttl.
///
/// Example: filter-ctl block 203.0.113.7 --ttl 1h --reason "ticket 4711"
#[derive(Debug, Args)]
pub struct Block {
    /// Addresses or CIDRs (203.0.113.7, 198.51.100.0/24, 2001:db8::/48).
    #[arg(required = true, value_name = "IP|CIDR")]
    targets: Vec<String>,
    /// How long the block lasts (90s, 10m, 1h, 2d; 0 = no expiry).
    #[arg(long, default_value = "0")]
    ttl: Ttl,
    /// Why, kept with the entry (up to 48 bytes).
    #[arg(long, default_value = "", value_parser = super::reason)]
    reason: String,
}

impl Block {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        add(g, ListKind::Block, &self.targets, self.ttl.0, &self.reason)
    }
}

/// Remove entries from the blocklist.
///
/// The argument must name the entry exactly as listed (a /24 block is
/// removed with the same /24).
///
/// Example: filter-ctl unblock 203.0.113.7
#[derive(Debug, Args)]
pub struct Unblock {
    #[arg(required = true, value_name = "IP|CIDR")]
    targets: Vec<String>,
}

impl Unblock {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        remove(g, ListKind::Block, &self.targets)
    }
}

/// Always pass traffic from addresses or networks.
///
/// The allowlist is checked before the blocklist: an allowed source is
/// never dropped.
///
/// Example: filter-ctl allow 10.0.0.0/8 --reason "management network"
#[derive(Debug, Args)]
pub struct Allow {
    #[arg(required = true, value_name = "IP|CIDR")]
    targets: Vec<String>,
    /// How long the entry lasts (0 = no expiry).
    #[arg(long, default_value = "0")]
    ttl: Ttl,
    /// Why, kept with the entry (up to 48 bytes).
    #[arg(long, default_value = "", value_parser = super::reason)]
    reason: String,
}

impl Allow {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        add(g, ListKind::Allow, &self.targets, self.ttl.0, &self.reason)
    }
}

/// Remove entries from the allowlist.
///
/// Example: filter-ctl disallow 10.0.0.0/8
#[derive(Debug, Args)]
pub struct Disallow {
    #[arg(required = true, value_name = "IP|CIDR")]
    targets: Vec<String>,
}

impl Disallow {
    pub fn execute(self, g: &Global) -> anyhow::Result<()> {
        remove(g, ListKind::Allow, &self.targets)
    }
}
