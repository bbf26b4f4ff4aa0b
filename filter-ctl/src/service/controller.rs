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
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    kernel::{
        conns::Ages,
        loader,
        maps::{ListKind, Maps},
    },
    model::metric::Metric,
    policy::{Policy, Thresholds},
    service::{
        audit::{AuditEvent, AuditLog},
        core::Core,
        ops::{Caller, Done, ErrorKind, Op, OpError, StatusReport, ThresholdRow},
        state::State,
        Call,
    },
};

/// How often a changing offender history is written at most.
const STATE_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Options from the command line that complement the policy file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    /// Interfaces added to the policy's.
    pub interfaces: Vec<String>,
    /// Replaces the policy's `pin_dir` (`--pin-dir`, `FILTER_PIN_DIR`).
    pub pin_dir: Option<PathBuf>,
    /// Replaces the policy's `control_socket` (`--socket`, `FILTER_SOCKET`).
    pub socket: Option<PathBuf>,
    /// Lines the HTTPS API's access log could not write (the API counts,
    /// `status` reports).
    pub access_errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RunOptions {
    /// Reads the policy file and applies the command line's overrides, at
    /// start and at every reload alike.
    pub fn load_policy(&self) -> Result<Policy, crate::policy::PolicyError> {
        let mut policy = Policy::load(&self.policy_path)?;
        if let Some(dir) = &self.pin_dir {
            policy.pin_dir = dir.clone();
        }
        if let Some(socket) = &self.socket {
            policy.control_socket = socket.clone();
        }
        Ok(policy)
    }
}

pub struct Controller {
    /// Held while running: one controller per pin directory.
    _lock: loader::PinLock,
    pub(super) opts: RunOptions,
    pub(super) policy: Policy,
    pub(super) core: Core<Maps>,
    pub(super) state: State,
    /// The data path's detection events (None: the ring could not be
    /// opened; every cycle then judges every source).
    pub(super) events: Option<crate::kernel::events::Events>,
    /// Sources reported by the data path, and the last window each was
    /// reported in.
    pub(super) suspects: std::collections::HashMap<filter_common::SourceKey, u32>,
    /// Scans reported since the last cycle: source, distinct closed ports.
    pub(super) scans: Vec<(filter_common::SourceKey, u32)>,
    pub(super) events_received: u64,
    /// Events the data path could not push (the ring was full), as last read.
    pub(super) events_lost: u64,
    /// The next cycle judges every source (start, lost events).
    pub(super) scan_pending: bool,
    pub(super) full_scans: u64,
    /// The data path's per-class packet totals at the last cycle.
    pub(super) class_totals: Option<([u64; 6], Instant)>,
    pub(super) attached: Vec<String>,
    /// Interfaces of `attached` whose filter is gone (see
    /// `watch_interfaces`).
    pub(super) lost: Vec<String>,
    pub(super) started: Instant,
    pub(super) cycles: u64,
    pub(super) last_cycle: Duration,
    /// Cycles per bucket of `CYCLE_BUCKETS_S` (not cumulative; the last
    /// slot is above every bound), and the sum of their durations.
    pub(super) cycle_hist: [u64; 11],
    pub(super) cycle_sum: Duration,
    pub(super) promotions: u64,
    pub(super) promotions_by_reason: std::collections::BTreeMap<String, u64>,
    /// Packets per second by flag class over the tracked sources, last
    /// cycle: SYN, SYN-ACK, ACK, RST, FIN, unparsed.
    pub(super) flag_rates: [f64; 6],
    pub(super) expiries: u64,
    /// Promotions skipped because the block list was full, in all.
    pub(super) promotions_skipped: u64,
    /// Promotions are being skipped now.
    pub(super) block_full: bool,
    /// Live block entries at the last cycle (status reads this, not the
    /// maps: a status must stay cheap with 200 000 entries).
    pub(super) blocked_live: usize,
    /// Live allowlist entries, as of the last cycle.
    pub(super) allowed_live: usize,
    /// The state changed since it was last written.
    pub(super) state_dirty: bool,
    pub(super) state_saved: Instant,
    /// Reading the host's connections failed last time (logged once).
    pub(super) conns_error: bool,
    /// When each inbound connection was first seen (slow connections).
    pub(super) ages: Ages,
    /// Source verification's state (`auto`'s switch, the SYN rate).
    pub(super) verify: super::verification::Auto,
}

impl Controller {
    /// Tracked sources: entries the data path added, up to the map's
    /// capacity (past it, the LRU recycles its oldest entries). Counting
    /// them would mean reading the whole map.
    fn tracked_sources(&self) -> u64 {
        let added = self
            .core
            .kernel
            .counter(filter_common::counter::SOURCES_ADDED)
            .unwrap_or(0);
        let cap = self.core.kernel.sources_capacity().unwrap_or(u32::MAX);
        added.min(cap as u64)
    }

    /// Entries and capacity of the maps an operator sizes.
    fn map_fill(&self) -> Vec<(String, u64, u64)> {
        let caps = &self.policy.capacities;
        vec![
            (
                "sources".into(),
                self.tracked_sources(),
                self.core.kernel.sources_capacity().unwrap_or(caps.sources) as u64,
            ),
            (
                "block".into(),
                self.blocked_live as u64,
                2 * (caps.block_exact as u64 + caps.block_net as u64),
            ),
            (
                "allow".into(),
                self.allowed_live as u64,
                2 * caps.allow as u64,
            ),
        ]
    }

    /// Validates the policy, attaches (re-adopting existing pins), applies
    /// the policy lists and opens the audit log. Nothing is attached if the
    /// policy is invalid.
    pub fn start(opts: RunOptions) -> anyhow::Result<Controller> {
        let policy = opts.load_policy()?;
        Self::start_with(opts, policy)
    }

    /// [`Controller::start`] with the policy already loaded.
    pub fn start_with(opts: RunOptions, policy: Policy) -> anyhow::Result<Controller> {
        let interfaces = Self::interfaces(&policy, &opts)?;
        super::verification::check_route(&policy)?;
        let lock = loader::lock_pin_dir(&policy.pin_dir)?;
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
        let config =
            policy.kernel_config(&state.thresholds(&policy), crate::kernel::possible_cpus());
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
        // `auto` picks up where a previous controller left it (on during
        // an attack it was still in), and the SYN count it read.
        let was_active = maps.config().is_ok_and(|c| c.verify_active != 0);
        let syns = maps.counter(filter_common::counter::SYNS).unwrap_or(0);
        maps.set_ports(policy.ports.tcp.listed(), policy.ports.udp.listed())?;
        let events = match crate::kernel::events::Events::from_pins(&policy.pin_dir) {
            Ok(e) => Some(e),
            Err(e) => {
                log::error!(
                    "{:#}: every cycle will judge every source",
                    anyhow::Error::from(e)
                );
                None
            }
        };
        let events_lost = maps
            .counter(filter_common::counter::EVENTS_LOST)
            .unwrap_or(0);
        let mut c = Controller {
            _lock: lock,
            opts,
            scan_pending: true,
            suspects: Default::default(),
            scans: Vec::new(),
            events_received: 0,
            events_lost,
            full_scans: 0,
            class_totals: None,
            attached: interfaces,
            lost: Vec::new(),
            core: Core {
                kernel: maps,
                audit,
            },
            state,
            events,
            started: Instant::now(),
            cycles: 0,
            last_cycle: Duration::ZERO,
            cycle_hist: [0; 11],
            cycle_sum: Duration::ZERO,
            promotions: 0,
            promotions_by_reason: Default::default(),
            flag_rates: [0.0; 6],
            expiries: 0,
            promotions_skipped: 0,
            block_full: false,
            blocked_live: 0,
            allowed_live: 0,
            state_dirty: false,
            state_saved: Instant::now(),
            conns_error: false,
            ages: Ages::default(),
            verify: super::verification::Auto::new(was_active, syns),
            policy,
        };
        let config = c.kernel_config(&c.policy);
        c.core.kernel.set_config(&config)?;
        c.sync_cookie_settings(false);
        let policy = c.policy.clone();
        c.sync_policy_lists(&policy)?;
        c.prune_audit();
        c.blocked_live = c
            .core
            .kernel
            .entries(ListKind::Block)?
            .iter()
            .filter(|e| !e.expired)
            .count();
        c.core.audit.record(&AuditEvent::Start {
            policy: c.opts.policy_path.clone(),
            interfaces: c.attached.clone(),
            readopted: adopted,
            pid: std::process::id(),
        });
        Ok(c)
    }

    pub(super) fn interfaces(policy: &Policy, opts: &RunOptions) -> anyhow::Result<Vec<String>> {
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

    /// Applies the audit retention; logs and audits what it removed.
    pub fn prune_audit(&mut self) {
        let retention = self.policy.audit.retention;
        let audit = &mut self.core.audit;
        match audit.prune(retention.0, std::time::SystemTime::now()) {
            Ok(p) if p.lines + p.files == 0 => {}
            Ok(p) => audit.record(&AuditEvent::AuditPruned {
                lines: p.lines,
                files: p.files,
                retention: retention.to_string(),
            }),
            Err(e) => log::error!("pruning audit log {}: {e}", audit.path().display()),
        }
    }

    pub(super) fn save_state(&mut self) {
        match self.state.save(&self.policy.state_dir) {
            Ok(()) => {
                self.state_dirty = false;
                self.state_saved = Instant::now();
            }
            Err(e) => log::error!("saving state: {e:#}"),
        }
    }

    /// Saves the offender history at most every [`STATE_SAVE_EVERY`] under
    /// a sustained attack (it is for escalation, not for enforcement: the
    /// blocks themselves are in the pinned maps), and at shutdown.
    pub(super) fn state_changed(&mut self) {
        self.state_dirty = true;
        if self.state_saved.elapsed() >= STATE_SAVE_EVERY {
            self.save_state();
        }
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
            Op::SetVerification { mode } => self.set_verification(who, mode),
            Op::Reload => match self.reload(who) {
                Ok(message) => Ok(Done::Reloaded { message }),
                Err(e) if e.is::<crate::policy::PolicyError>() => {
                    Err(OpError::new(ErrorKind::BadInput, format!("{e:#}")))
                }
                Err(e) => Err(OpError::kernel(e)),
            },
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
        let config = self.kernel_config(&self.policy);
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
            audit_write_errors: self.core.audit.write_errors(),
            alerts_dropped: self.core.audit.alerts_dropped(),
            access_log_write_errors: self
                .opts
                .access_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            cycles: self.cycles,
            last_cycle_ms: self.last_cycle.as_secs_f64() * 1e3,
            cycle_buckets: self
                .cycle_hist
                .iter()
                .take(super::ops::CYCLE_BUCKETS_S.len())
                .scan(0, |acc, n| {
                    *acc += n;
                    Some(*acc)
                })
                .collect(),
            cycle_sum_s: self.cycle_sum.as_secs_f64(),
            promotions_by_reason: self.promotions_by_reason.clone(),
            flag_rates: ["syn", "syn_ack", "ack", "rst", "fin", "unparsed"]
                .iter()
                .zip(self.flag_rates)
                .map(|(f, r)| (f.to_string(), (r * 10.0).round() / 10.0))
                .collect(),
            map_fill: self.map_fill(),
            tracked_sources: self.tracked_sources() as usize,
            events: self.events_received,
            events_lost: self.events_lost,
            full_scans: self.full_scans,
            blocked_entries: self.blocked_live,
            allowed_entries: self.allowed_live,
            promotions: self.promotions,
            expiries: self.expiries,
            promotions_skipped: self.promotions_skipped,
            block_list_full: self.block_full,
            thresholds: self.threshold_rows(),
            verification: self.verification_status(),
        })
    }

    /// Called on SIGTERM/SIGINT.
    pub fn shutdown(&mut self, signal: &str) {
        let detach = self.policy.detach_on_exit;
        if detach {
            // No filter answers SYNs any more: the host's setting goes back.
            if let Some(v) = self.state.syncookies_before.take() {
                if let Err(e) = crate::kernel::sysctl::set_syncookies(v) {
                    log::error!("net.ipv4.tcp_syncookies back to {v}: {e}");
                }
                self.state_dirty = true;
            }
            for iface in &self.attached {
                if let Err(e) = loader::detach(iface, &self.policy.pin_dir, false) {
                    log::error!("detach {iface}: {:#}", anyhow::Error::from(e));
                }
            }
        }
        if self.state_dirty {
            self.save_state();
        }
        self.core.audit.record(&AuditEvent::Stop {
            signal: signal.to_owned(),
            detached: detach,
        });
    }
}

/// Operations that read the whole `SOURCES` map (seconds at a million
/// sources): answered from the pins on a blocking thread.
fn reads_every_source(op: &Op) -> bool {
    matches!(op, Op::Top { .. } | Op::Sources { .. })
}

/// Runs the controller with `policy` (loaded from `opts.policy_path`) until
/// SIGTERM or SIGINT, answering the calls that arrive on `calls`.
pub async fn run(
    opts: RunOptions,
    policy: Policy,
    mut calls: mpsc::Receiver<Call>,
    alerts: Option<mpsc::Sender<serde_json::Value>>,
) -> anyhow::Result<()> {
    let socket = policy.control_socket.clone();
    let mut c = Controller::start_with(opts, policy)?;
    c.core.audit.set_tap(alerts);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut period = c.policy().interval.0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await; // the first tick is immediate; start already pruned
                         // The ring's descriptor polls readable when events wait: they are
                         // taken as they come, so a burst between two cycles does not fill it.
    let events_fd = match c.events.as_ref().map(|e| {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the descriptor belongs to `c.events`, which outlives
        // this registration (declared after `c`, it is dropped first) and
        // is never replaced.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                e.as_raw_fd(),
                tokio::io::Interest::READABLE,
            )
        }
    }) {
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => {
            log::warn!("polling the event ring: {e}; events are read each cycle");
            None
        }
        None => None,
    };
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
            ready = async {
                match &events_fd {
                    Some(fd) => fd.readable().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok(mut guard) = ready {
                    c.take_events();
                    guard.clear_ready();
                }
            }
            Some(call) = calls.recv() => {
                if reads_every_source(&call.op) {
                    // Off the loop: a read of a million sources must not
                    // hold up detection.
                    let (pins, audit) = (c.policy.pin_dir.clone(), c.policy.audit.path.clone());
                    tokio::task::spawn_blocking(move || {
                        let done = Core::offline(&pins, &audit, &call.op)
                            .and_then(|mut core| core.apply(&call.who, call.op));
                        let _ = call.reply.send(done);
                    });
                    continue;
                }
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
