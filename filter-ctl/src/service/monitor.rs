//! The tick: every interval the controller reads the per-source counters,
//! judges them, promotes the offenders to the block list (escalating
//! repeat offenders) and sweeps the entries that have expired.

use std::{collections::HashMap, time::Instant};

use filter_common::list_reason;
use ipnet::IpNet;

use crate::{
    detect::{self, Listed},
    kernel::{
        conns::{self, Held},
        loader,
        maps::{new_entry, scope_text, ListKind},
    },
    model::{addr::source_net, clock},
    service::{audit::AuditEvent, controller::Controller},
};

impl Controller {
    /// Checks that each interface still has a live filter (two syscalls
    /// each). A lost one (detached from outside, its device deleted) is
    /// audited and attached again as soon as its device exists; until then
    /// `status` lists it as lost.
    pub fn watch_interfaces(&mut self) {
        for iface in self.attached.clone() {
            let live = loader::link_is_live(&self.policy.pin_dir, &iface);
            let was_lost = self.lost.contains(&iface);
            if live {
                if was_lost {
                    self.lost.retain(|i| *i != iface);
                    self.core
                        .audit
                        .record(&AuditEvent::InterfaceRestored { iface });
                }
                continue;
            }
            if !was_lost {
                log::error!("{iface}: the filter is no longer attached; re-attaching");
                self.lost.push(iface.clone());
                self.core.audit.record(&AuditEvent::InterfaceLost {
                    iface: iface.clone(),
                });
            }
            if loader::if_index(&iface).is_err() {
                continue; // Not back yet: try again next cycle.
            }
            let config = self.policy.kernel_config(&self.thresholds());
            let p = &self.policy;
            match loader::attach(&iface, p.xdp_mode, &p.pin_dir, &config, &p.capacities) {
                Ok(how) => {
                    log::warn!("{iface}: filter attached again ({how:?})");
                    self.lost.retain(|i| *i != iface);
                    self.core
                        .audit
                        .record(&AuditEvent::InterfaceRestored { iface });
                }
                Err(e) => log::error!(
                    "{iface}: re-attaching failed: {:#}",
                    anyhow::Error::from(e)
                ),
            }
        }
    }

    /// One control-loop step. A failure to promote one source (a full map)
    /// is reported and the cycle goes on with the others.
    pub fn cycle(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        self.watch_interfaces();
        let cur = self.core.kernel.snapshot()?;
        let thresholds = self.thresholds().by_metric();
        let held = self.held_connections(&thresholds);
        let detections = detect::detect(&self.prev, &cur, &held, thresholds);
        // One listing of each list per cycle: the sweep removes what has
        // expired and returns what is live, which promotion then consults.
        let allow: Vec<IpNet> = self
            .sweep_expired(ListKind::Allow)?
            .into_iter()
            .map(|l| l.net)
            .collect();
        let blocked = self.sweep_expired(ListKind::Block)?;
        if !detections.is_empty() {
            let prefix = self.policy.ipv6_prefix;
            let now_unix = clock::unix_now_s();
            for (net, scope, d) in
                detect::promotable(detections, |k| source_net(k, prefix), &allow, &blocked)
            {
                let (ttl, offense) =
                    self.state
                        .offenders
                        .promote(&net, now_unix, &self.policy.blocking);
                let note = d.note();
                let mut entry = new_entry(list_reason::DETECTOR, Some(ttl), &note);
                entry.scope = scope;
                self.core.kernel.insert(ListKind::Block, net, &entry)?;
                self.promotions += 1;
                let action = if scope == 0 { "block" } else { "restrict" };
                self.core.audit.record(&AuditEvent::Promote {
                    source: net,
                    reason: d.reason(),
                    action,
                    scope: scope_text(scope),
                    rate: (d.rate * 10.0).round() / 10.0,
                    threshold: d.threshold,
                    ttl_s: ttl.as_secs(),
                    offense,
                });
                log::warn!(
                    "{action} {net} ({}) for {}: {note}",
                    scope_text(scope),
                    humantime::format_duration(ttl)
                );
            }
            self.state.offenders.prune(now_unix, &self.policy.blocking);
            self.save_state();
        }
        self.prev = cur;
        self.cycles += 1;
        self.last_cycle = t0.elapsed();
        Ok(())
    }

    /// The inbound connections each source holds, when a threshold needs
    /// them. A failure to read them is logged once and judged as none.
    fn held_connections(
        &mut self,
        thresholds: &[u64; detect::METRIC_COUNT],
    ) -> HashMap<filter_common::SourceKey, Held> {
        let gauges = [
            detect::IDLE_CONNECTIONS,
            detect::CONCURRENT_CONNECTIONS,
            detect::SLOW_CONNECTIONS,
        ];
        if gauges.iter().all(|&g| thresholds[g] == 0) {
            return HashMap::new();
        }
        match conns::inbound(
            self.policy.ipv6_prefix,
            &self.policy.connections,
            &mut self.ages,
            Instant::now(),
        ) {
            Ok(held) => {
                self.conns_error = false;
                held
            }
            Err(e) => {
                if !self.conns_error {
                    log::error!("reading the host's connections (sock_diag): {e}");
                    self.conns_error = true;
                }
                HashMap::new()
            }
        }
    }

    /// Removes the entries of `list` whose expiry has passed (the kernel
    /// already ignores them), audits each, and returns the live ones.
    fn sweep_expired(&mut self, list: ListKind) -> anyhow::Result<Vec<Listed>> {
        let mut live = Vec::new();
        for e in self.core.kernel.entries(list)? {
            if !e.expired {
                live.push(Listed {
                    net: e.net,
                    scope: e.raw.scope,
                });
                continue;
            }
            self.core.kernel.remove(list, e.net)?;
            self.expiries += 1;
            self.core.audit.record(&AuditEvent::Expire {
                list,
                net: e.net,
                reason: e.reason,
                note: e.note,
            });
        }
        Ok(live)
    }
}
