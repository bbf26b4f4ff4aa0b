//! `filter-ctl run`: the controller's life-cycle. It attaches the filter per
//! the policy, keeps the policy's lists in the maps, runs the tick
//! (`monitor`), answers the admin operations between ticks, reloads the
//! policy and stops. All of it is audited. The data path never depends on
//! it: if the controller dies, the pinned program keeps filtering with the
//! pinned maps.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use filter_common::list_reason;
use ipnet::IpNet;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    kernel::{
        conns::Ages,
        loader,
        maps::{new_entry, ListKind, Maps},
    },
    model::{metric::Metric, snapshot::Snapshot},
    policy::{Policy, Thresholds},
    service::{
        audit::{AuditEvent, AuditLog},
        core::Core,
        ops::{Caller, Done, ErrorKind, Op, OpError, StatusReport, ThresholdRow},
        state::State,
        Call,
    },
};

/// Options from the command line that complement the policy file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    /// Interfaces added to the policy's.
    pub interfaces: Vec<String>,
}

pub struct Controller {
    pub(super) opts: RunOptions,
    pub(super) policy: Policy,
    pub(super) core: Core<Maps>,
    pub(super) state: State,
    pub(super) prev: Snapshot,
    pub(super) attached: Vec<String>,
    /// Interfaces of `attached` whose filter is gone (see
    /// `watch_interfaces`).
    pub(super) lost: Vec<String>,
    pub(super) started: Instant,
    pub(super) cycles: u64,
    pub(super) last_cycle: Duration,
    pub(super) promotions: u64,
    pub(super) expiries: u64,
    /// Promotions skipped because the block list was full, in all.
    pub(super) promotions_skipped: u64,
    /// Promotions are being skipped now.
    pub(super) block_full: bool,
    /// Reading the host's connections failed last time (logged once).
    pub(super) conns_error: bool,
    /// When each inbound connection was first seen (slow connections).
    pub(super) ages: Ages,
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
            match how {
                loader::Attached::Already => adopted.push(iface.clone()),
                loader::Attached::New => {}
                other => log::warn!("{iface}: {other:?}"),
            }
        }
        let mut maps = Maps::from_pins(&policy.pin_dir)?;
        maps.set_config(&config)?;
        maps.set_ports(policy.ports.tcp.listed(), policy.ports.udp.listed())?;
        let mut c = Controller {
            opts,
            prev: Snapshot::default(),
            attached: interfaces,
            lost: Vec::new(),
            core: Core {
                kernel: maps,
                audit,
            },
            state,
            started: Instant::now(),
            cycles: 0,
            last_cycle: Duration::ZERO,
            promotions: 0,
            expiries: 0,
            promotions_skipped: 0,
            block_full: false,
            conns_error: false,
            ages: Ages::default(),
            policy,
        };
        c.sync_policy_lists()?;
        c.prune_audit();
        c.prev = c.core.kernel.snapshot()?;
        c.core.audit.record(&AuditEvent::Start {
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
            for e in self.core.kernel.entries(list)? {
                if e.raw.reason == list_reason::POLICY && !wanted.contains(&e.net) {
                    self.core.kernel.remove(list, e.net)?;
                }
            }
            if list == ListKind::Block {
                self.core.lift_restrictions_within(&wanted)?;
            }
            let entry = new_entry(list_reason::POLICY, None, "policy");
            for net in wanted {
                self.core.kernel.insert(list, net, &entry)?;
            }
        }
        Ok(())
    }

    /// Applies the audit retention; logs and audits what it removed.
    pub fn prune_audit(&mut self) {
        let retention = self.policy.audit.retention;
        let audit = &mut self.core.audit;
        match audit.prune(retention.0, std::time::SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => audit.record(&AuditEvent::AuditPruned {
                lines: n,
                retention: retention.to_string(),
            }),
            Err(e) => log::error!("pruning audit log {}: {e}", audit.path().display()),
        }
    }

    pub(super) fn save_state(&mut self) {
        if let Err(e) = self.state.save(&self.policy.state_dir) {
            log::error!("saving state: {e:#}");
        }
    }

    /// Re-reads the policy. If it is invalid, nothing changes and the error
    /// says why.
    pub fn reload(&mut self, by: &Caller) -> anyhow::Result<String> {
        let new = match Policy::load(&self.opts.policy_path) {
            Ok(p) => p,
            Err(e) => {
                self.core.audit.record(&AuditEvent::ReloadRejected {
                    error: e.to_string(),
                });
                return Err(e.into());
            }
        };
        if new.pin_dir != self.policy.pin_dir {
            let e = anyhow::anyhow!("pin_dir cannot change on reload (restart the controller)");
            self.core.audit.record(&AuditEvent::ReloadRejected {
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
        self.core.kernel.set_config(&config)?;
        self.core
            .kernel
            .set_ports(new.ports.tcp.listed(), new.ports.udp.listed())?;
        if let Some(log) = new_audit {
            self.core.audit.record(&AuditEvent::AuditMoved {
                to: new.audit.path.clone(),
            });
            self.core.audit = log;
        }
        self.lost.retain(|i| interfaces.contains(i));
        self.attached = interfaces;
        self.policy = new;
        self.sync_policy_lists()?;
        let msg = format!(
            "reloaded {}: interfaces {}",
            self.opts.policy_path.display(),
            self.attached.join(", ")
        );
        self.core.audit.record(&AuditEvent::Reload {
            policy: self.opts.policy_path.clone(),
            interfaces: self.attached.clone(),
            by: by.clone(),
        });
        Ok(msg)
    }

    /// Answers one admin operation: those that need the policy or the
    /// state here, the rest by the same code the CLI runs offline.
    pub fn apply(&mut self, who: &Caller, op: Op) -> Result<Done, OpError> {
        match op {
            Op::Status => self.status().map(|s| Done::Status(Box::new(s))),
            Op::Thresholds => Ok(Done::Thresholds {
                rows: self.threshold_rows(),
            }),
            Op::SetThreshold { metric, value } => self.set_threshold(who, metric, value),
            Op::Reload => match self.reload(who) {
                Ok(message) => Ok(Done::Reloaded { message }),
                Err(e) if e.is::<crate::policy::PolicyError>() => {
                    Err(OpError::new(ErrorKind::BadInput, format!("{e:#}")))
                }
                Err(e) => Err(OpError::kernel(e)),
            },
            // Rates since the last cycle: no waiting, and what the
            // detector will judge next.
            Op::Top { by, limit, .. } => self.core.top_since(&self.prev, by, limit).map(Done::Top),
            op => self.core.apply(who, op),
        }
    }

    fn set_threshold(
        &mut self,
        who: &Caller,
        metric: Metric,
        value: Option<u64>,
    ) -> Result<Done, OpError> {
        let old = self.thresholds().get(metric);
        let before = self.state.threshold_overrides.clone();
        match value {
            Some(v) => self.state.threshold_overrides.insert(metric, v),
            None => self.state.threshold_overrides.remove(&metric),
        };
        // The kernel counts scans against closed_ports itself.
        let config = self.policy.kernel_config(&self.thresholds());
        if let Err(e) = self.core.kernel.set_config(&config) {
            self.state.threshold_overrides = before;
            return Err(OpError::kernel(e));
        }
        self.save_state();
        let new = self.thresholds().get(metric);
        self.core.audit.record(&AuditEvent::SetThreshold {
            name: metric,
            old,
            new,
            overridden: value.is_some(),
            by: who.clone(),
        });
        Ok(Done::ThresholdSet { metric, old, new })
    }

    fn threshold_rows(&self) -> Vec<ThresholdRow> {
        let t = self.thresholds();
        let p = self.policy.thresholds;
        Metric::ALL
            .iter()
            .map(|&m| ThresholdRow {
                name: m,
                value: t.get(m),
                policy: p.get(m),
                overridden: self.state.threshold_overrides.contains_key(&m),
            })
            .collect()
    }

    fn status(&self) -> Result<StatusReport, OpError> {
        let blocked = self
            .core
            .kernel
            .entries(ListKind::Block)
            .map_err(OpError::kernel)?;
        Ok(StatusReport {
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            policy: self.opts.policy_path.clone(),
            interfaces: self.attached.clone(),
            lost_interfaces: self.lost.clone(),
            xdp_mode: self.policy.xdp_mode,
            interval_ms: self.policy.interval.0.as_millis() as u64,
            pin_dir: self.policy.pin_dir.clone(),
            audit_log: self.core.audit.path().to_owned(),
            cycles: self.cycles,
            last_cycle_ms: self.last_cycle.as_secs_f64() * 1e3,
            tracked_sources: self.prev.sources.len(),
            blocked_entries: blocked.iter().filter(|e| !e.expired).count(),
            promotions: self.promotions,
            expiries: self.expiries,
            promotions_skipped: self.promotions_skipped,
            block_list_full: self.block_full,
            thresholds: self.threshold_rows(),
        })
    }

    /// Called on SIGTERM/SIGINT.
    pub fn shutdown(&mut self, signal: &str) {
        let detach = self.policy.detach_on_exit;
        if detach {
            for iface in &self.attached {
                if let Err(e) = loader::detach(iface, &self.policy.pin_dir, false) {
                    log::error!("detach {iface}: {:#}", anyhow::Error::from(e));
                }
            }
        }
        self.core.audit.record(&AuditEvent::Stop {
            signal: signal.to_owned(),
            detached: detach,
        });
    }
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
                let _ = call.reply.send(c.apply(&call.who, call.op));
            }
            _ = hourly.tick() => c.prune_audit(),
            _ = hup.recv() => {
                match c.reload(&Caller::Controller) {
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
