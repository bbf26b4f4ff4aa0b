//! `block`, `unblock`, `allow`, `disallow`: edits of the pinned lists. All
//! arguments are validated before the first map write, so a bad one changes
//! nothing.

use std::time::Duration;

use clap::Args;
use filter_common::list_reason;
use ipnet::IpNet;

use super::{control_verbs::request, human_secs, Global, Ttl};
use crate::{
    api::client::call,
    kernel::maps::{new_entry, ListKind, Maps},
    model::addr::parse_net,
    service::ops::Request,
};

fn parse_all(args: &[String]) -> anyhow::Result<Vec<IpNet>> {
    args.iter()
        .map(|a| parse_net(a).map_err(anyhow::Error::from))
        .collect()
}

/// Whether a controller answers on the socket: then changes go through it
/// (and into its audit log); otherwise straight to the pinned maps.
fn controller_running(g: &Global) -> bool {
    matches!(call(&g.socket, &Request::Status), Ok(r) if r.ok)
}

fn add(
    g: &Global,
    list: ListKind,
    args: &[String],
    ttl: Option<Duration>,
    note: &str,
) -> anyhow::Result<()> {
    let nets = parse_all(args)?;
    let mut maps = if controller_running(g) {
        None
    } else {
        Some(Maps::from_pins(&g.pin_dir)?)
    };
    let entry = new_entry(list_reason::ADMIN, ttl, note);
    for net in nets {
        match maps.as_mut() {
            Some(maps) => maps.insert(list, net, &entry)?,
            None => {
                let (net, ttl_s) = (net.to_string(), ttl.map(|t| t.as_secs()));
                let reason = note.to_owned();
                let req = match list {
                    ListKind::Block => Request::Block { net, ttl_s, reason },
                    ListKind::Allow => Request::Allow { net, ttl_s, reason },
                };
                request(g, &req)?;
            }
        }
        let verb = if list == ListKind::Block {
            "blocked"
        } else {
            "allowed"
        };
        match ttl {
            Some(t) => println!("{verb} {net} for {}", human_secs(t.as_secs())),
            None => println!("{verb} {net} (no expiry)"),
        }
    }
    Ok(())
}

fn remove(g: &Global, list: ListKind, args: &[String]) -> anyhow::Result<()> {
    let nets = parse_all(args)?;
    let via_controller = controller_running(g);
    let mut maps = if via_controller {
        None
    } else {
        Some(Maps::from_pins(&g.pin_dir)?)
    };
    let mut missing = Vec::new();
    for net in nets {
        let removed = match maps.as_mut() {
            Some(maps) => maps.remove(list, net)?,
            None => {
                let net = net.to_string();
                let req = match list {
                    ListKind::Block => Request::Unblock { net },
                    ListKind::Allow => Request::Disallow { net },
                };
                match call(&g.socket, &req)? {
                    r if r.ok => true,
                    r if r
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("is not in the")) =>
                    {
                        false
                    }
                    r => anyhow::bail!(r.error.unwrap_or_default()),
                }
            }
        };
        if removed {
            println!("removed {net} from the {} list", name(list));
        } else {
            missing.push(net.to_string());
        }
    }
    if !missing.is_empty() {
        anyhow::bail!("not in the {} list: {}", name(list), missing.join(", "));
    }
    Ok(())
}

fn name(list: ListKind) -> &'static str {
    match list {
        ListKind::Allow => "allow",
        ListKind::Block => "block",
    }
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
    #[arg(long, default_value = "")]
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
    #[arg(long, default_value = "")]
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
