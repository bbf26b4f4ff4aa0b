//! Reloading the policy, and keeping its lists in the maps: validated
//! whole first, then applied all or nothing (issue 7).

use anyhow::{bail, Context as _};
use filter_common::list_reason;
use ipnet::IpNet;

use crate::{
    kernel::{
        loader,
        maps::{new_entry, ListKind},
    },
    policy::Policy,
    service::{
        audit::{AuditEvent, AuditLog},
        controller::Controller,
        ops::Caller,
    },
};

impl Controller {
    /// Re-reads the policy, validates everything that can be checked
    /// (the file, interfaces, audit log, room in the maps) and then applies
    /// it all or nothing: a step that fails undoes the ones before it. Every
    /// outcome is audited (`reload` or `reload_rejected`).
    pub fn reload(&mut self, by: &Caller) -> anyhow::Result<String> {
        match self.try_reload() {
            Ok(msg) => {
                self.core.audit.record(&AuditEvent::Reload {
                    policy: self.opts.policy_path.clone(),
                    interfaces: self.attached.clone(),
                    by: by.clone(),
                });
                Ok(msg)
            }
            Err(e) => {
                self.core.audit.record(&AuditEvent::ReloadRejected {
                    error: format!("{e:#}"),
                });
                Err(e)
            }
        }
    }

    fn try_reload(&mut self) -> anyhow::Result<String> {
        let new = self.opts.load_policy()?;
        if new.pin_dir != self.policy.pin_dir {
            bail!("pin_dir cannot change on reload (restart the controller)");
        }
        let interfaces = Self::interfaces(&new, &self.opts)?;
        super::verification::check_route(&new)?;
        for iface in &interfaces {
            loader::if_index(iface)?;
        }
        let new_audit = match new.audit.path != self.policy.audit.path {
            true => Some(
                AuditLog::open(&new.audit.path)
                    .with_context(|| format!("opening audit log {}", new.audit.path.display()))?,
            ),
            false => None,
        };
        let config = self.kernel_config(&new);
        let old_config = self.core.kernel.config()?;
        // Undoable steps, in order; on a failure, what was done is undone.
        let mut attached_now = Vec::new();
        let applied = (|| -> anyhow::Result<()> {
            for iface in interfaces.iter().filter(|i| !self.attached.contains(i)) {
                loader::attach(iface, new.xdp_mode, &new.pin_dir, &config, &new.capacities)
                    .with_context(|| format!("attach {iface}"))?;
                attached_now.push(iface.clone());
            }
            self.core.kernel.set_config(&config)?;
            self.core
                .kernel
                .set_ports(new.ports.tcp.listed(), new.ports.udp.listed())?;
            self.sync_policy_lists(&new)
        })();
        if let Err(e) = applied {
            for iface in &attached_now {
                let _ = loader::detach(iface, &new.pin_dir, false);
            }
            let _ = self.core.kernel.set_config(&old_config);
            let _ = self.core.kernel.set_ports(
                self.policy.ports.tcp.listed(),
                self.policy.ports.udp.listed(),
            );
            return Err(e);
        }
        // Interfaces the new policy drops: one detached from outside
        // meanwhile is already where it should be.
        for iface in self.attached.iter().filter(|i| !interfaces.contains(i)) {
            match loader::detach(iface, &new.pin_dir, false) {
                Ok(()) | Err(crate::error::Error::IfaceNotAttached { .. }) => {}
                Err(e) => log::error!("detach {iface}: {:#}", anyhow::Error::from(e)),
            }
        }
        if let Some(log) = new_audit {
            self.core.audit.record(&AuditEvent::AuditMoved {
                to: new.audit.path.clone(),
            });
            let mut log = log;
            log.set_tap(self.core.audit.take_tap());
            self.core.audit = log;
        }
        self.lost.retain(|i| interfaces.contains(i));
        self.attached = interfaces;
        self.policy = new;
        self.sync_cookie_settings(false);
        Ok(format!(
            "reloaded {}: interfaces {}",
            self.opts.policy_path.display(),
            self.attached.join(", ")
        ))
    }

    /// Writes `policy`'s allow and block entries; removes entries that a
    /// previous policy put there and this one no longer lists. Admin and
    /// detector entries are left alone. Checked first against the room in
    /// the maps; if a write still fails, the entries it added are taken out
    /// again, so the lists are as before.
    pub(super) fn sync_policy_lists(&mut self, policy: &Policy) -> anyhow::Result<()> {
        let mut plans = Vec::new();
        for (list, nets) in [
            (ListKind::Allow, &policy.allow),
            (ListKind::Block, &policy.block),
        ] {
            let wanted: Vec<IpNet> = nets.iter().map(|n| n.0).collect();
            let current = self.core.kernel.entries(list)?;
            let stale: Vec<IpNet> = current
                .iter()
                .filter(|e| e.raw.reason == list_reason::POLICY && !wanted.contains(&e.net))
                .map(|e| e.net)
                .collect();
            let new: Vec<IpNet> = wanted
                .iter()
                .filter(|n| !current.iter().any(|e| e.net == **n))
                .copied()
                .collect();
            self.check_room(list, &current, &stale, &new)?;
            plans.push((list, wanted, stale, new));
        }
        let entry = new_entry(list_reason::POLICY, None, "policy");
        let mut added: Vec<(ListKind, IpNet)> = Vec::new();
        for (list, wanted, _, new) in &plans {
            for &net in wanted {
                if let Err(e) = self.core.kernel.insert(*list, net, &entry) {
                    for &(l, n) in &added {
                        let _ = self.core.kernel.remove(l, n);
                    }
                    return Err(
                        anyhow::Error::from(e).context("writing the policy's lists (undone)")
                    );
                }
                if new.contains(&net) {
                    added.push((*list, net));
                }
            }
        }
        for (list, wanted, stale, _) in plans {
            for net in stale {
                self.core.kernel.remove(list, net)?;
            }
            if list == ListKind::Block {
                self.core.lift_restrictions_within(&wanted)?;
            }
        }
        Ok(())
    }

    /// Fails if adding `new` (and removing `stale`) would overfill one of
    /// `list`'s maps as they were created (pinned maps keep their size,
    /// whatever the policy's capacities say now).
    fn check_room(
        &self,
        list: ListKind,
        current: &[crate::kernel::maps::ListedEntry],
        stale: &[IpNet],
        new: &[IpNet],
    ) -> anyhow::Result<()> {
        let (exact, cidr) = self.core.kernel.block_capacity()?;
        let allow_cap = self.core.kernel.allow_capacity()?;
        // [v4 exact, v4 CIDR, v6 exact, v6 CIDR] (allow: CIDR slots only).
        let slot = |n: &IpNet| {
            let v6 = matches!(n, IpNet::V6(_)) as usize;
            let cidr = list == ListKind::Allow || !crate::model::addr::is_host(n);
            v6 * 2 + cidr as usize
        };
        let mut used = [0i64; 4];
        current.iter().for_each(|e| used[slot(&e.net)] += 1);
        stale.iter().for_each(|n| used[slot(n)] -= 1);
        new.iter().for_each(|n| used[slot(n)] += 1);
        for (i, &n) in used.iter().enumerate() {
            let cap = match (list, i % 2) {
                (ListKind::Allow, _) => allow_cap,
                (ListKind::Block, 0) => exact,
                (ListKind::Block, _) => cidr,
            };
            if n > cap as i64 {
                bail!(
                    "the policy's {list} list does not fit: {n} {} entries in a map of {cap}",
                    if i < 2 { "IPv4" } else { "IPv6" }
                );
            }
        }
        Ok(())
    }
}
