//! The tick: every interval the controller reads the per-source counters,
//! judges them, promotes the offenders to the block list (escalating
//! repeat offenders) and sweeps the entries that have expired.

use std::{collections::HashMap, time::Instant};

use filter_common::{list_reason, SourceKey};
use ipnet::IpNet;

use crate::{
    detect::{self, Listed, Windows},
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
        let mut resync = false;
        for iface in self.attached.clone() {
            let live = loader::link_is_live(&self.policy.pin_dir, &iface);
            let was_lost = self.lost.contains(&iface);
            if live && self.verify.transparent && !self.handover_live(&iface) {
                // Only the cookie route's TC program went away.
                log::error!("{iface}: the handover TC program is gone; attaching it again");
                let again = loader::if_index(&iface)
                    .and_then(|i| crate::kernel::handover::attach(&iface, i, &self.policy.pin_dir));
                if let Err(e) = again {
                    log::error!("{iface}: {:#}", anyhow::Error::from(e));
                }
                resync = true;
            }
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
            let config = self.kernel_config(&self.policy);
            let p = &self.policy;
            match loader::attach(&iface, p.xdp_mode, &p.pin_dir, &config, &p.capacities) {
                Ok(how) => {
                    log::warn!("{iface}: filter attached again ({how:?})");
                    resync = true;
                    self.lost.retain(|i| *i != iface);
                    self.core
                        .audit
                        .record(&AuditEvent::InterfaceRestored { iface });
                }
                Err(e) => log::error!("{iface}: re-attaching failed: {:#}", anyhow::Error::from(e)),
            }
        }
        if resync {
            // The cookie route follows what is attached now.
            self.sync_cookie_settings(false);
        }
    }

    fn handover_live(&self, iface: &str) -> bool {
        loader::if_index(iface)
            .is_ok_and(|i| crate::kernel::handover::live(&self.policy.pin_dir, iface, i))
    }

    /// Takes every event waiting in the ring: the sources to judge this
    /// cycle (and the next, until the window they were reported in is
    /// complete), and the scans. Called as events arrive and at each cycle.
    pub fn take_events(&mut self) {
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let (suspects, scans) = (&mut self.suspects, &mut self.scans);
        self.events_received += events.drain(|e| {
            if e.metric == filter_common::window::SCAN {
                scans.push((e.key, e.count));
            } else {
                let w = suspects.entry(e.key).or_insert(e.window);
                *w = (*w).max(e.window);
            }
        }) as u64;
    }

    /// The sources to judge and their window counts: those the kernel
    /// reported, looked up one by one; or every source, in batches (after
    /// events were lost, at start, and when so many were reported that a
    /// scan is cheaper).
    fn judged_sources(&mut self, now_win: u32) -> anyhow::Result<Vec<(SourceKey, Windows)>> {
        let lost = self
            .core
            .kernel
            .counter(filter_common::counter::EVENTS_LOST)?;
        if lost > self.events_lost {
            log::warn!(
                "{} detection events lost (the ring was full): judging every source this cycle",
                lost - self.events_lost
            );
            self.events_lost = lost;
            self.scan_pending = true;
        }
        let capacity = self.core.kernel.sources_capacity()? as usize;
        let mut out = Vec::new();
        if self.scan_pending || self.suspects.len() > capacity / FULL_SCAN_SHARE {
            self.scan_pending = false;
            self.full_scans += 1;
            let thresholds = self.thresholds().by_metric();
            let window = self.policy.interval.0;
            // Only the sources over a threshold are kept: a scan of a
            // million sources holds one batch, not the map.
            self.core.kernel.for_each_source(|key, per_cpu| {
                let w = detect::window_counts(per_cpu, now_win);
                if detect::over_metrics(&w, &thresholds, window)
                    .next()
                    .is_some()
                {
                    out.push((key, w));
                }
            })?;
            return Ok(out);
        }
        for key in self.suspects.keys() {
            if let Some(per_cpu) = self.core.kernel.source_cpus(key)? {
                out.push((*key, detect::window_counts(&per_cpu, now_win)));
            }
        }
        Ok(out)
    }

    /// Packets per second of each flag class over the tracked sources since
    /// the last cycle, from the data path's own totals.
    fn update_flag_rates(&mut self, now: Instant) {
        let mut totals = [0u64; 6];
        for (i, t) in totals.iter_mut().enumerate() {
            *t = self
                .core
                .kernel
                .counter(filter_common::counter::CLASSES + i as u32)
                .unwrap_or(0);
        }
        if let Some((before, at)) = self.class_totals {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                for (r, (n, b)) in self.flag_rates.iter_mut().zip(totals.iter().zip(before)) {
                    *r = n.saturating_sub(b) as f64 / dt;
                }
            }
        }
        self.class_totals = Some((totals, now));
    }

    /// One control-loop step. A failure to promote one source (a full map)
    /// is reported and the cycle goes on with the others.
    pub fn cycle(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        self.watch_interfaces();
        self.verification_step();
        self.update_flag_rates(t0);
        self.take_events();
        let window = self.policy.interval.0;
        let now_win = detect::window_of(clock::monotonic_ns(), window);
        let judged = self.judged_sources(now_win)?;
        // Kept until the window they were reported in has been judged
        // complete (the cycle after it ends).
        self.suspects.retain(|_, w| w.wrapping_add(1) >= now_win);
        let scans = std::mem::take(&mut self.scans);
        let thresholds = self.thresholds().by_metric();
        let held = self.held_connections(&thresholds);
        let detections = detect::detect(&judged, &scans, &held, thresholds, window);
        // One listing of each list per cycle: the sweep removes what has
        // expired and returns what is live, which promotion then consults.
        let allow: Vec<IpNet> = self
            .sweep_expired(ListKind::Allow)?
            .into_iter()
            .map(|l| l.net)
            .collect();
        self.allowed_live = allow.len();
        let blocked = self.sweep_expired(ListKind::Block)?;
        self.blocked_live = blocked.len();
        // Emptied maps and prefix lengths no live entry uses stop costing
        // the data path a look-up.
        self.core
            .kernel
            .sync_list_index(allow.iter(), blocked.iter().map(|l| &l.net))?;
        let mut skipped = 0;
        if !detections.is_empty() {
            let prefix = self.policy.ipv6_prefix;
            let now_unix = clock::unix_now_s();
            let mut room = Room::new(self.core.kernel.block_capacity()?, &blocked);
            for (i, (net, scope, d)) in
                detect::promotable(detections, |k| source_net(k, prefix), &allow, &blocked)
                    .into_iter()
                    .enumerate()
            {
                // Thousands of promotions take a while: keep the ring from
                // filling meanwhile.
                if i % 512 == 511 {
                    self.take_events();
                }
                // A new entry must leave the reserve for admin and policy
                // entries; widening a restriction replaces its entry.
                let replaces = blocked.iter().any(|l| l.net == net);
                if !replaces && !room.take(&net) {
                    skipped += 1;
                    continue;
                }
                let (ttl, offense) =
                    self.state
                        .offenders
                        .promote(&net, now_unix, &self.policy.blocking);
                let note = d.note();
                let mut entry = new_entry(list_reason::DETECTOR, Some(ttl), &note);
                entry.scope = scope;
                if let Err(e) = self.core.kernel.insert(ListKind::Block, net, &entry) {
                    // The cycle goes on with the others (and is reported
                    // below); the next cycle tries again.
                    log::debug!("promoting {net}: {:#}", anyhow::Error::from(e));
                    skipped += 1;
                    continue;
                }
                self.promotions += 1;
                *self.promotions_by_reason.entry(d.reason()).or_default() += 1;
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
            self.state_changed();
        }
        self.report_full(skipped);
        self.cycles += 1;
        self.last_cycle = t0.elapsed();
        let secs = self.last_cycle.as_secs_f64();
        let bucket = super::ops::CYCLE_BUCKETS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(super::ops::CYCLE_BUCKETS_S.len());
        self.cycle_hist[bucket] += 1;
        self.cycle_sum += self.last_cycle;
        Ok(())
    }

    /// Audits the block list filling up (once, when promotions start to be
    /// skipped) and making room again; counts what was skipped.
    fn report_full(&mut self, skipped: u64) {
        self.promotions_skipped += skipped;
        if skipped > 0 && !self.block_full {
            self.block_full = true;
            log::error!(
                "block list full: {skipped} promotions skipped (admin and policy entries keep \
                 their reserve; raise capacities.block_exact / block_net)"
            );
            self.core
                .audit
                .record(&AuditEvent::BlockListFull { skipped });
        } else if skipped == 0 && self.block_full {
            self.block_full = false;
            log::warn!("block list has room again");
            self.core.audit.record(&AuditEvent::BlockListRoom {
                skipped_total: self.promotions_skipped,
            });
        }
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
        let now = clock::monotonic_ns();
        let mut live = Vec::new();
        for (net, raw) in self.core.kernel.raw_entries(list)? {
            if raw.expires_ns == 0 || raw.expires_ns > now {
                live.push(Listed {
                    net,
                    scope: raw.scope,
                });
                continue;
            }
            self.core.kernel.remove(list, net)?;
            self.expiries += 1;
            let e = crate::kernel::maps::listed(net, list, "", raw, now);
            self.core.audit.record(&AuditEvent::Expire {
                list,
                net,
                reason: e.reason,
                note: e.note,
            });
        }
        Ok(live)
    }
}

/// More reported sources than 1/`FULL_SCAN_SHARE` of the map's capacity
/// are judged by one batched scan rather than one look-up each.
const FULL_SCAN_SHARE: usize = 8;

/// The share of each block map that promotions may not fill: kept for
/// admin and policy entries (1/8, at least one entry).
const RESERVE_SHIFT: u32 = 3;

/// Room left for promotions in each block map (per family, exact and
/// CIDR), from the live entries and the maps' sizes.
struct Room {
    /// [v4 exact, v4 CIDR, v6 exact, v6 CIDR]: entries promotions may still add.
    left: [u64; 4],
}

impl Room {
    fn new((exact, cidr): (u32, u32), live: &[Listed]) -> Room {
        let usable = |cap: u32| (cap - (cap >> RESERVE_SHIFT).max(1).min(cap)) as u64;
        let mut left = [usable(exact), usable(cidr), usable(exact), usable(cidr)];
        for l in live {
            let slot = &mut left[Self::slot(&l.net)];
            *slot = slot.saturating_sub(1);
        }
        Room { left }
    }

    fn slot(net: &IpNet) -> usize {
        let v6 = matches!(net, IpNet::V6(_)) as usize;
        let cidr = !crate::model::addr::is_host(net) as usize;
        v6 * 2 + cidr
    }

    /// Takes one entry of room for `net`; false if there is none.
    fn take(&mut self, net: &IpNet) -> bool {
        let slot = &mut self.left[Self::slot(net)];
        if *slot == 0 {
            return false;
        }
        *slot -= 1;
        true
    }
}
