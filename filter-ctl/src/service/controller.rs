//! `filter-ctl run`: the controller. It attaches the filter per the policy,
//! then every interval reads the per-source counters, promotes sources over
//! a threshold to the blocklist (escalating repeat offenders), removes
//! expired entries, and answers the admin CLI on its control socket. All of
//! it is audited. The data path never depends on it: if the controller
//! dies, the pinned program keeps filtering with the pinned maps.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use filter_common::list_reason;
use ipnet::IpNet;
use serde_json::json;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot},
};

use crate::{
    detect::{self, Listed, Snapshot},
    kernel::loader,
    kernel::maps::{new_entry, scope_text, ListKind, Maps},
    model::addr::{parse_net, source_net},
    model::clock,
    model::metric::Metric,
    policy::{Policy, Thresholds},
    service::audit::{AuditEvent, AuditLog},
    service::ops::{Request, Response},
    service::state::State,
};

/// Options from the command line that complement the policy file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    /// Interfaces added to the policy's.
    pub interfaces: Vec<String>,
}

pub struct Controller {
    opts: RunOptions,
    policy: Policy,
    maps: Maps,
    audit: AuditLog,
    state: State,
    prev: Snapshot,
    attached: Vec<String>,
    started: Instant,
    cycles: u64,
    last_cycle: Duration,
    promotions: u64,
    expiries: u64,
    /// Reading the host's connections failed last time (logged once).
    conns_error: bool,
    /// When each inbound connection was first seen (slow connections).
    ages: crate::kernel::conns::Ages,
}

impl Controller {
    /// Validates the policy, attaches (re-adopting existing pins), applies
    /// the policy lists and opens the audit log. Nothing is attached if the
    /// policy is invalid.
    pub fn start(opts: RunOptions) -> anyhow::Result<Controller> {
        let policy = Policy::load(&opts.policy_path)?;
        Self::start_with(opts, policy)
    }

    /// [`Controller::start`] with the policy already loaded.
    pub fn start_with(opts: RunOptions, policy: Policy) -> anyhow::Result<Controller> {
        let interfaces = Self::interfaces(&policy, &opts)?;
        if !crate::kernel::btf::TcpSockOffsets::from_kernel().complete() {
            log::warn!(
                "this kernel's BTF (/sys/kernel/btf/vmlinux) does not describe tcp_sock and \
                 tcp_request_sock: empty connections will not be counted"
            );
        }
        if policy.ports.tcp == crate::policy::PortSet::Off {
            log::info!("ports.tcp is off: SYNs to closed ports pass, port scans are not counted");
        }
        let audit = AuditLog::open(&policy.audit.path)
            .with_context(|| format!("opening audit log {}", policy.audit.path.display()))?;
        let state = State::load(&policy.state_dir)?;
        for iface in &interfaces {
            loader::if_index(iface)?;
        }
        let config = policy.kernel_config(&state.thresholds(&policy));
        let mut adopted = Vec::new();
        for iface in &interfaces {
            let how = loader::attach(
                iface,
                policy.xdp_mode,
                &policy.pin_dir,
                &config,
                &policy.capacities,
            )
            .with_context(|| format!("attach {iface}"))?;
            if how == loader::Attached::Already {
                adopted.push(iface.clone());
            }
        }
        let mut maps = Maps::from_pins(&policy.pin_dir)?;
        maps.set_config(&config)?;
        maps.set_ports(policy.ports.tcp.listed(), policy.ports.udp.listed())?;
        let mut c = Controller {
            opts,
            prev: Snapshot::default(),
            attached: interfaces,
            maps,
            audit,
            state,
            started: Instant::now(),
            cycles: 0,
            last_cycle: Duration::ZERO,
            promotions: 0,
            expiries: 0,
            conns_error: false,
            ages: crate::kernel::conns::Ages::default(),
            policy,
        };
        c.sync_policy_lists()?;
        c.prune_audit();
        c.prev = c.maps.snapshot()?;
        c.audit.record(&AuditEvent::Start {
            policy: c.opts.policy_path.clone(),
            interfaces: c.attached.clone(),
            readopted: adopted,
            pid: std::process::id(),
        });
        Ok(c)
    }

    fn interfaces(policy: &Policy, opts: &RunOptions) -> anyhow::Result<Vec<String>> {
        let mut all = policy.interfaces.clone();
        for i in &opts.interfaces {
            if !all.contains(i) {
                all.push(i.clone());
            }
        }
        if all.is_empty() {
            bail!(
                "{}: no interfaces: list them under `interfaces:` or pass --interface",
                opts.policy_path.display()
            );
        }
        Ok(all)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn thresholds(&self) -> Thresholds {
        self.state.thresholds(&self.policy)
    }

    /// Writes the policy's allow and block entries; removes entries that a
    /// previous policy put there and this one no longer lists. Admin and
    /// detector entries are left alone.
    fn sync_policy_lists(&mut self) -> anyhow::Result<()> {
        for (list, nets) in [
            (ListKind::Allow, self.policy.allow.clone()),
            (ListKind::Block, self.policy.block.clone()),
        ] {
            let wanted: Vec<IpNet> = nets.iter().map(|n| n.0).collect();
            for e in self.maps.entries(list)? {
                if e.raw.reason == list_reason::POLICY && !wanted.contains(&e.net) {
                    self.maps.remove(list, e.net)?;
                }
            }
            if list == ListKind::Block {
                self.lift_restrictions_within(&wanted)?;
            }
            let entry = new_entry(list_reason::POLICY, None, "policy");
            for net in wanted {
                self.maps.insert(list, net, &entry)?;
            }
        }
        Ok(())
    }

    /// One control-loop step.
    pub fn cycle(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let cur = self.maps.snapshot()?;
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
                self.maps.insert(ListKind::Block, net, &entry)?;
                self.promotions += 1;
                let action = if scope == 0 { "block" } else { "restrict" };
                self.audit.record(&AuditEvent::Promote {
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
    ) -> HashMap<filter_common::SourceKey, crate::kernel::conns::Held> {
        let gauges = [
            detect::IDLE_CONNECTIONS,
            detect::CONCURRENT_CONNECTIONS,
            detect::SLOW_CONNECTIONS,
        ];
        if gauges.iter().all(|&g| thresholds[g] == 0) {
            return HashMap::new();
        }
        match crate::kernel::conns::inbound(
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

    /// Removes the detector's restrictions inside any of `nets`, which are
    /// about to be blocked: a longer-prefix restriction would otherwise be
    /// the match the kernel finds first for an IPv6 /64, and let the
    /// source's connections through a block meant to stop everything. The
    /// block list is read once, however many nets.
    fn lift_restrictions_within(&mut self, nets: &[IpNet]) -> anyhow::Result<()> {
        for e in self.maps.entries(ListKind::Block)? {
            if e.raw.scope == 0 {
                continue;
            }
            let Some(&inside) = nets.iter().find(|n| **n != e.net && n.contains(&e.net)) else {
                continue;
            };
            self.maps.remove(ListKind::Block, e.net)?;
            self.audit.record(&AuditEvent::RestrictionLifted {
                net: e.net,
                scope: e.scope,
                inside,
            });
        }
        Ok(())
    }

    /// Removes the entries of `list` whose expiry has passed (the kernel
    /// already ignores them), audits each, and returns the live ones.
    fn sweep_expired(&mut self, list: ListKind) -> anyhow::Result<Vec<Listed>> {
        let mut live = Vec::new();
        for e in self.maps.entries(list)? {
            if !e.expired {
                live.push(Listed {
                    net: e.net,
                    scope: e.raw.scope,
                });
                continue;
            }
            self.maps.remove(list, e.net)?;
            self.expiries += 1;
            self.audit.record(&AuditEvent::Expire {
                list,
                net: e.net,
                reason: e.reason,
                note: e.note,
            });
        }
        Ok(live)
    }

    /// Applies the audit retention; logs and audits what it removed.
    pub fn prune_audit(&mut self) {
        let retention = self.policy.audit.retention;
        match self.audit.prune(retention.0, std::time::SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => self.audit.record(&AuditEvent::AuditPruned {
                lines: n,
                retention: retention.to_string(),
            }),
            Err(e) => log::error!("pruning audit log {}: {e}", self.audit.path().display()),
        }
    }

    fn save_state(&mut self) {
        if let Err(e) = self.state.save(&self.policy.state_dir) {
            log::error!("saving state: {e:#}");
        }
    }

    /// Re-reads the policy. If it is invalid, nothing changes and the error
    /// says why.
    pub fn reload(&mut self) -> anyhow::Result<String> {
        let new = match Policy::load(&self.opts.policy_path) {
            Ok(p) => p,
            Err(e) => {
                self.audit.record(&AuditEvent::ReloadRejected {
                    error: e.to_string(),
                });
                return Err(e.into());
            }
        };
        if new.pin_dir != self.policy.pin_dir {
            let e = anyhow::anyhow!("pin_dir cannot change on reload (restart the controller)");
            self.audit.record(&AuditEvent::ReloadRejected {
                error: e.to_string(),
            });
            return Err(e);
        }
        let interfaces = Self::interfaces(&new, &self.opts)?;
        for iface in &interfaces {
            loader::if_index(iface)?;
        }
        // Everything that can fail on its own comes before the first change.
        let new_audit = match new.audit.path != self.policy.audit.path {
            true => Some(
                AuditLog::open(&new.audit.path)
                    .with_context(|| format!("opening audit log {}", new.audit.path.display()))?,
            ),
            false => None,
        };
        let config = new.kernel_config(&self.state.thresholds(&new));
        for iface in interfaces.iter().filter(|i| !self.attached.contains(i)) {
            loader::attach(iface, new.xdp_mode, &new.pin_dir, &config, &new.capacities)?;
        }
        for iface in self.attached.iter().filter(|i| !interfaces.contains(i)) {
            loader::detach(iface, &new.pin_dir, false)?;
        }
        self.maps.set_config(&config)?;
        self.maps
            .set_ports(new.ports.tcp.listed(), new.ports.udp.listed())?;
        if let Some(log) = new_audit {
            self.audit.record(&AuditEvent::AuditMoved {
                to: new.audit.path.clone(),
            });
            self.audit = log;
        }
        self.attached = interfaces;
        self.policy = new;
        self.sync_policy_lists()?;
        let msg = format!(
            "reloaded {}: interfaces {}",
            self.opts.policy_path.display(),
            self.attached.join(", ")
        );
        self.audit.record(&AuditEvent::Reload {
            policy: self.opts.policy_path.clone(),
            interfaces: self.attached.clone(),
        });
        Ok(msg)
    }

    /// Answers one admin request.
    pub fn handle(&mut self, req: Request) -> Response {
        match self.try_handle(req) {
            Ok(data) => Response::ok(data),
            Err(e) => Response::err(format!("{e:#}")),
        }
    }

    fn try_handle(&mut self, req: Request) -> anyhow::Result<serde_json::Value> {
        match req {
            Request::Status => Ok(self.status()?),
            Request::GetThresholds => Ok(self.thresholds_json()),
            Request::SetThreshold { name, value } => {
                let old = self.thresholds().get(name);
                match value {
                    Some(v) => self.state.threshold_overrides.insert(name, v),
                    None => self.state.threshold_overrides.remove(&name),
                };
                self.save_state();
                // The kernel counts scans against closed_ports itself.
                self.maps
                    .set_config(&self.policy.kernel_config(&self.thresholds()))?;
                let new = self.thresholds().get(name);
                self.audit.record(&AuditEvent::SetThreshold {
                    name,
                    old,
                    new,
                    overridden: value.is_some(),
                });
                Ok(json!({"name": name, "old": old, "new": new}))
            }
            Request::Reload => Ok(json!({"message": self.reload()?})),
            Request::Block { net, ttl_s, reason } => {
                self.admin_add(ListKind::Block, &net, ttl_s, &reason)
            }
            Request::Allow { net, ttl_s, reason } => {
                self.admin_add(ListKind::Allow, &net, ttl_s, &reason)
            }
            Request::Unblock { net } => self.admin_remove(ListKind::Block, &net),
            Request::Disallow { net } => self.admin_remove(ListKind::Allow, &net),
        }
    }

    fn admin_add(
        &mut self,
        list: ListKind,
        net: &str,
        ttl_s: Option<u64>,
        reason: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let net = parse_net(net)?;
        let ttl = ttl_s.map(Duration::from_secs);
        if list == ListKind::Block {
            self.lift_restrictions_within(&[net])?;
        }
        self.maps
            .insert(list, net, &new_entry(list_reason::ADMIN, ttl, reason))?;
        let reason = reason.to_owned();
        self.audit.record(&match list {
            ListKind::Block => AuditEvent::AdminBlock { net, ttl_s, reason },
            ListKind::Allow => AuditEvent::AdminAllow { net, ttl_s, reason },
        });
        Ok(json!({"net": net.to_string(), "ttl_s": ttl_s}))
    }

    fn admin_remove(&mut self, list: ListKind, net: &str) -> anyhow::Result<serde_json::Value> {
        let net = parse_net(net)?;
        if !self.maps.remove(list, net)? {
            bail!(
                "{net} is not in the {} list",
                if list == ListKind::Block {
                    "block"
                } else {
                    "allow"
                }
            );
        }
        self.audit.record(&match list {
            ListKind::Block => AuditEvent::AdminUnblock { net },
            ListKind::Allow => AuditEvent::AdminDisallow { net },
        });
        Ok(json!({"net": net.to_string()}))
    }

    fn thresholds_json(&self) -> serde_json::Value {
        let t = self.thresholds();
        let p = self.policy.thresholds;
        let rows: Vec<serde_json::Value> = Metric::ALL
            .iter()
            .map(|&m| {
                json!({
                    "name": m,
                    "value": t.get(m),
                    "policy": p.get(m),
                    "overridden": self.state.threshold_overrides.contains_key(&m),
                })
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    fn status(&self) -> anyhow::Result<serde_json::Value> {
        let blocked = self.maps.entries(ListKind::Block)?;
        Ok(json!({
            "pid": std::process::id(),
            "uptime_s": self.started.elapsed().as_secs(),
            "policy": self.opts.policy_path,
            "interfaces": self.attached,
            "xdp_mode": self.policy.xdp_mode,
            "interval_ms": self.policy.interval.0.as_millis() as u64,
            "pin_dir": self.policy.pin_dir,
            "audit_log": self.audit.path(),
            "cycles": self.cycles,
            "last_cycle_ms": self.last_cycle.as_secs_f64() * 1e3,
            "tracked_sources": self.prev.sources.len(),
            "blocked_entries": blocked.iter().filter(|e| !e.expired).count(),
            "promotions": self.promotions,
            "expiries": self.expiries,
            "thresholds": self.thresholds_json(),
        }))
    }

    /// Called on SIGTERM/SIGINT.
    pub fn shutdown(&mut self, signal: &str) {
        let detach = self.policy.detach_on_exit;
        if detach {
            for iface in &self.attached {
                if let Err(e) = loader::detach(iface, &self.policy.pin_dir, false) {
                    log::error!("detach {iface}: {e}");
                }
            }
        }
        self.audit.record(&AuditEvent::Stop {
            signal: signal.to_owned(),
            detached: detach,
        });
    }
}

/// An admin request and where its answer goes: what a transport hands the
/// control loop. The loop answers between cycles and never waits on the
/// client; the transport owns the connection and its timeouts.
pub struct Call {
    pub req: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Runs the controller with `policy` (loaded from `opts.policy_path`) until
/// SIGTERM or SIGINT, answering the calls that arrive on `calls`.
pub async fn run(
    opts: RunOptions,
    policy: Policy,
    mut calls: mpsc::Receiver<Call>,
) -> anyhow::Result<()> {
    let socket = policy.control_socket.clone();
    let mut c = Controller::start_with(opts, policy)?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut period = c.policy().interval.0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await; // the first tick is immediate; start already pruned
    log::info!(
        "controller running on {} (interval {}), socket {}",
        c.attached.join(", "),
        c.policy().interval,
        socket.display()
    );
    let why = loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = c.cycle() {
                    log::error!("cycle: {e:#}");
                }
            }
            Some(call) = calls.recv() => {
                // The client may have gone: its answer is then dropped.
                let _ = call.reply.send(c.handle(call.req));
            }
            _ = hourly.tick() => c.prune_audit(),
            _ = hup.recv() => {
                match c.reload() {
                    Ok(msg) => log::info!("{msg}"),
                    Err(e) => log::error!("reload rejected, running policy unchanged: {e:#}"),
                }
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
        if c.policy().interval.0 != period {
            period = c.policy().interval.0;
            tick = tokio::time::interval(period);
        }
    };
    c.shutdown(why);
    log::info!("controller stopped ({why})");
    Ok(())
}
