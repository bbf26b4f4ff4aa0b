//! The namespace rig: an attacker, a legitimate client and the protected
//! server, each in its own network namespace. The server has one veth pair
//! to each of them, with fixed MACs, addresses and permanent neighbour
//! entries.
//!
//! ```text
//!  [att] att0 10.77.1.2 ──── srv-att 10.77.1.1 ┐
//!                                              [srv]  (filter on both)
//!  [cli] cli0 10.77.2.2 ──── srv-cli 10.77.2.1 ┘
//! ```
//!
//! with IPv6 beside IPv4: 2001:db8:77:1::/64 and 2001:db8:77:2::/64.

use crate::netns::{sh, NetNs};

pub const ATT_IP: &str = "10.77.1.2";
pub const SRV_ATT_IP: &str = "10.77.1.1";
pub const CLI_IP: &str = "10.77.2.2";
pub const SRV_CLI_IP: &str = "10.77.2.1";
pub const ATT_IF: &str = "att0";
pub const CLI_IF: &str = "cli0";
pub const SRV_ATT_IF: &str = "srv-att";
pub const SRV_CLI_IF: &str = "srv-cli";
pub const SRV_ATT_MAC: &str = "02:77:01:00:00:01";
pub const ATT_MAC: &str = "02:77:01:00:00:02";
pub const SRV_CLI_MAC: &str = "02:77:02:00:00:01";
pub const CLI_MAC: &str = "02:77:02:00:00:02";
/// Spoofed floods draw their sources from here.
pub const SPOOF_NET: &str = "10.200.0.0/16";
/// IPv6 on the same links (2001:db8:77:1::/64 attacker side, :2:: client).
pub const ATT_IP6: &str = "2001:db8:77:1::2";
pub const SRV_ATT_IP6: &str = "2001:db8:77:1::1";
pub const CLI_IP6: &str = "2001:db8:77:2::2";
pub const SRV_CLI_IP6: &str = "2001:db8:77:2::1";
/// Spoofed IPv6 floods vary the second 32-bit word of this address.
pub const SPOOF_NET6: &str = "2001:db8:c8::1";

pub struct Rig {
    pub att: NetNs,
    pub cli: NetNs,
    pub srv: NetNs,
}

impl Rig {
    /// Namespaces `<prefix>-att`, `<prefix>-cli`, `<prefix>-srv`.
    pub fn new(prefix: &str) -> Rig {
        let rig = Rig {
            att: NetNs::named(&format!("{prefix}-att")),
            cli: NetNs::named(&format!("{prefix}-cli")),
            srv: NetNs::named(&format!("{prefix}-srv")),
        };
        rig.link(
            &rig.att,
            ATT_IF,
            ATT_MAC,
            ATT_IP,
            SRV_ATT_IF,
            SRV_ATT_MAC,
            SRV_ATT_IP,
        );
        rig.link(
            &rig.cli,
            CLI_IF,
            CLI_MAC,
            CLI_IP,
            SRV_CLI_IF,
            SRV_CLI_MAC,
            SRV_CLI_IP,
        );
        rig.link6(
            &rig.att,
            ATT_IF,
            ATT_MAC,
            ATT_IP6,
            SRV_ATT_IF,
            SRV_ATT_MAC,
            SRV_ATT_IP6,
        );
        rig.link6(
            &rig.cli,
            CLI_IF,
            CLI_MAC,
            CLI_IP6,
            SRV_CLI_IF,
            SRV_CLI_MAC,
            SRV_CLI_IP6,
        );
        // Replies to spoofed sources go back towards the attacker and die
        // there, as they would on the Internet.
        rig.srv.ip(&["route", "add", "default", "via", ATT_IP]);
        rig.srv
            .ip(&["-6", "route", "add", "default", "via", ATT_IP6]);
        rig
    }

    /// A rig with unique names, removed when dropped (tests).
    pub fn unique() -> Rig {
        Self::new(&crate::netns::unique("fr"))
    }

    #[allow(clippy::too_many_arguments)]
    fn link(
        &self,
        peer: &NetNs,
        pif: &str,
        pmac: &str,
        pip: &str,
        sif: &str,
        smac: &str,
        sip: &str,
    ) {
        sh(&[
            "ip",
            "link",
            "add",
            pif,
            "netns",
            &peer.name,
            "address",
            pmac,
            "type",
            "veth",
            "peer",
            "name",
            sif,
            "netns",
            &self.srv.name,
            "address",
            smac,
        ]);
        peer.ip(&["addr", "add", &format!("{pip}/24"), "dev", pif]);
        peer.ip(&["link", "set", pif, "up"]);
        Self::neighbour(peer, sip, smac, pif);
        peer.ip(&["route", "add", "10.77.0.0/16", "via", sip]);
        self.srv
            .ip(&["addr", "add", &format!("{sip}/24"), "dev", sif]);
        self.srv.ip(&["link", "set", sif, "up"]);
        Self::neighbour(&self.srv, pip, pmac, sif);
    }

    /// A permanent neighbour entry in `ns`: no ARP or ND races.
    fn neighbour(ns: &NetNs, ip: &str, mac: &str, dev: &str) {
        ns.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }

    /// IPv6 addresses and permanent neighbours on a link made by `link`.
    #[allow(clippy::too_many_arguments)]
    fn link6(
        &self,
        peer: &NetNs,
        pif: &str,
        pmac: &str,
        pip: &str,
        sif: &str,
        smac: &str,
        sip: &str,
    ) {
        peer.ip(&["addr", "add", &format!("{pip}/64"), "dev", pif, "nodad"]);
        Self::neighbour(peer, sip, smac, pif);
        peer.ip(&["-6", "route", "add", "2001:db8:77::/48", "via", sip]);
        self.srv
            .ip(&["addr", "add", &format!("{sip}/64"), "dev", sif, "nodad"]);
        Self::neighbour(&self.srv, pip, pmac, sif);
    }

    /// Leaves the namespaces in place (for `cargo xtask rig up`).
    pub fn keep(self) {
        self.att.keep();
        self.cli.keep();
        self.srv.keep();
    }
}

/// Deletes the namespaces of a rig made with `prefix` (missing ones are fine).
pub fn down(prefix: &str) {
    for role in ["att", "cli", "srv"] {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &format!("{prefix}-{role}")])
            .status();
    }
}
