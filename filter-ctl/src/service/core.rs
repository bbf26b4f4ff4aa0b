//! The admin operations over the filter's maps, one function each, whoever
//! asks and however: the controller applies them between cycles, and the
//! CLI applies the same code to the pinned maps when no controller runs
//! (offline). The maps are reached through [`Kernel`], so the logic
//! (validation, audit, typed errors) is tested without root against an
//! in-memory kernel.

use std::time::Duration;

use filter_common::{list_reason, Config, ListEntry};
use ipnet::IpNet;

use crate::{
    error::Result as KResult,
    kernel::{
        loader,
        maps::{new_entry, ListKind, ListedEntry, Maps, ReasonStats},
    },
    model::{
        addr::{parse_net, source_net},
        clock,
        snapshot::Snapshot,
    },
    service::{
        audit::{AuditEvent, AuditLog},
        ops::{
            Caller, Done, ErrorKind, Op, OpError, SourceRow, SourceSort, StatsReport, TopBy,
            TopReport, TopRow, VerifiedRow,
        },
    },
};

/// What the service needs of the kernel: the real pinned maps, or an
/// in-memory stand-in in the service's unit tests.
pub trait Kernel {
    fn entries(&self, list: ListKind) -> KResult<Vec<ListedEntry>>;
    fn insert(&mut self, list: ListKind, net: IpNet, entry: &ListEntry) -> KResult<()>;
    /// `Ok(false)` if the entry was not there.
    fn remove(&mut self, list: ListKind, net: IpNet) -> KResult<bool>;
    fn stats(&self) -> KResult<Vec<ReasonStats>>;
    fn snapshot(&self) -> KResult<Snapshot>;
    fn config(&self) -> KResult<Config>;
    fn set_config(&mut self, cfg: &Config) -> KResult<()>;
    /// Interfaces the filter is attached to.
    fn attached(&self) -> Vec<String>;
    /// Verified sources and the monotonic ns each one's verification ends.
    fn verified(&self) -> KResult<Vec<(filter_common::SourceKey, u64)>>;
}

impl Kernel for Maps {
    fn entries(&self, list: ListKind) -> KResult<Vec<ListedEntry>> {
        Maps::entries(self, list)
    }
    fn insert(&mut self, list: ListKind, net: IpNet, entry: &ListEntry) -> KResult<()> {
        Maps::insert(self, list, net, entry)
    }
    fn remove(&mut self, list: ListKind, net: IpNet) -> KResult<bool> {
        Maps::remove(self, list, net)
    }
    fn stats(&self) -> KResult<Vec<ReasonStats>> {
        Maps::stats(self)
    }
    fn snapshot(&self) -> KResult<Snapshot> {
        Maps::snapshot(self)
    }
    fn config(&self) -> KResult<Config> {
        Maps::config(self)
    }
    fn set_config(&mut self, cfg: &Config) -> KResult<()> {
        Maps::set_config(self, cfg)
    }
    fn attached(&self) -> Vec<String> {
        self.pin_dir()
            .map(loader::attached_interfaces)
            .unwrap_or_default()
    }
    fn verified(&self) -> KResult<Vec<(filter_common::SourceKey, u64)>> {
        Maps::verified(self)
    }
}

/// The maps and the audit log: what every admin operation works on.
pub struct Core<K> {
    pub kernel: K,
    pub audit: AuditLog,
}

/// Operations that need the running controller (its policy, its state).
fn needs_controller(op: &Op) -> Option<&'static str> {
    match op {
        Op::Status => Some("status"),
        Op::Thresholds => Some("reading thresholds"),
        Op::SetThreshold { .. } => Some("setting a threshold"),
        Op::Reload => Some("reload"),
        Op::SetVerification { .. } => Some("setting verification"),
        _ => None,
    }
}

impl Core<Maps> {
    /// The service without a controller: the pinned maps under `pin_dir`,
    /// audited to `audit_log`. An editing `op` opens the audit log first
    /// and fails, changing nothing, if it cannot be written.
    pub fn offline(
        pin_dir: &std::path::Path,
        audit_log: &std::path::Path,
        op: &Op,
    ) -> Result<Core<Maps>, OpError> {
        if let Some(what) = needs_controller(op) {
            return Err(OpError::not_running(what));
        }
        let audit = if op.edits() {
            AuditLog::open(audit_log).map_err(|e| {
                OpError::kernel(anyhow::Error::new(e).context(format!(
                    "opening the audit log {} (--audit-log)",
                    audit_log.display()
                )))
            })?
        } else {
            AuditLog::unopened(audit_log)
        };
        let kernel = Maps::from_pins(pin_dir).map_err(OpError::kernel)?;
        Ok(Core { kernel, audit })
    }
}

impl<K: Kernel> Core<K> {
    /// Applies one operation. Those that need the controller's policy or
    /// state fail with [`ErrorKind::NotRunning`]: the controller answers
    /// them itself before it hands the rest here.
    pub fn apply(&mut self, who: &Caller, op: Op) -> Result<Done, OpError> {
        if let Some(what) = needs_controller(&op) {
            return Err(OpError::not_running(what));
        }
        match op {
            Op::Stats => Ok(Done::Stats(StatsReport {
                attached: self.kernel.attached(),
                reasons: self.kernel.stats().map_err(OpError::kernel)?,
            })),
            Op::List { list } => Ok(Done::List {
                entries: self.kernel.entries(list).map_err(OpError::kernel)?,
            }),
            Op::Sources { sort, limit } => Ok(Done::Sources {
                rows: self.sources(sort, limit)?,
            }),
            Op::Top { by, limit, window } => {
                let prev = self.kernel.snapshot().map_err(OpError::kernel)?;
                std::thread::sleep(window);
                self.top_since(&prev, by, limit).map(Done::Top)
            }
            Op::Add {
                list,
                net,
                ttl_s,
                reason,
            } => self.add(who, list, net, ttl_s, reason),
            Op::Remove { list, net } => self.remove(who, list, net),
            Op::Verified => self.verified().map(|rows| Done::Verified { rows }),
            Op::Status
            | Op::Thresholds
            | Op::SetThreshold { .. }
            | Op::Reload
            | Op::SetVerification { .. } => unreachable!("answered by needs_controller"),
        }
    }

    fn add(
        &mut self,
        who: &Caller,
        list: ListKind,
        net: IpNet,
        ttl_s: Option<u64>,
        reason: String,
    ) -> Result<Done, OpError> {
        let net = exact(net)?;
        if reason.chars().any(char::is_control) {
            return Err(OpError::bad_input(
                "the reason contains a control character; give one line of text",
            ));
        }
        let ttl = ttl_s.filter(|&s| s > 0).map(Duration::from_secs);
        if ttl.is_some_and(|t| t > crate::policy::MAX_TTL) {
            return Err(OpError::bad_input(
                "a TTL longer than ten years; use none for no expiry",
            ));
        }
        if list == ListKind::Block {
            self.lift_restrictions_within(&[net])?;
        }
        self.kernel
            .insert(list, net, &new_entry(list_reason::ADMIN, ttl, &reason))
            .map_err(OpError::kernel)?;
        let by = who.clone();
        let ttl_s = ttl.map(|t| t.as_secs());
        self.audit.record(&match list {
            ListKind::Block => AuditEvent::AdminBlock {
                net,
                ttl_s,
                reason,
                by,
            },
            ListKind::Allow => AuditEvent::AdminAllow {
                net,
                ttl_s,
                reason,
                by,
            },
        });
        Ok(Done::Added { net, ttl_s })
    }

    fn remove(&mut self, who: &Caller, list: ListKind, net: IpNet) -> Result<Done, OpError> {
        let net = exact(net)?;
        if !self.kernel.remove(list, net).map_err(OpError::kernel)? {
            return Err(OpError::new(
                ErrorKind::NotListed,
                format!("{net} is not in the {list} list"),
            ));
        }
        let by = who.clone();
        self.audit.record(&match list {
            ListKind::Block => AuditEvent::AdminUnblock { net, by },
            ListKind::Allow => AuditEvent::AdminDisallow { net, by },
        });
        Ok(Done::Removed { net })
    }

    /// Removes the detector's restrictions inside any of `nets`, which are
    /// about to be blocked: a longer-prefix restriction would otherwise be
    /// the match the kernel finds first for an IPv6 /64, and let the
    /// source's connections through a block meant to stop everything. The
    /// block list is read once, however many nets.
    pub fn lift_restrictions_within(&mut self, nets: &[IpNet]) -> Result<(), OpError> {
        for e in self
            .kernel
            .entries(ListKind::Block)
            .map_err(OpError::kernel)?
        {
            if e.raw.scope == 0 {
                continue;
            }
            let Some(&inside) = nets.iter().find(|n| **n != e.net && n.contains(&e.net)) else {
                continue;
            };
            self.kernel
                .remove(ListKind::Block, e.net)
                .map_err(OpError::kernel)?;
            self.audit.record(&AuditEvent::RestrictionLifted {
                net: e.net,
                scope: e.scope,
                inside,
            });
        }
        Ok(())
    }

    /// Verified sources, soonest to expire last.
    fn verified(&self) -> Result<Vec<VerifiedRow>, OpError> {
        let prefix = self.ipv6_prefix()?;
        let now = clock::monotonic_ns();
        let mut rows: Vec<VerifiedRow> = self
            .kernel
            .verified()
            .map_err(OpError::kernel)?
            .into_iter()
            .filter(|&(_, until)| until > now)
            .map(|(k, until)| VerifiedRow {
                source: source_net(&k, prefix),
                expires_in_s: (until - now) / 1_000_000_000,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.expires_in_s
                .cmp(&a.expires_in_s)
                .then(a.source.cmp(&b.source))
        });
        Ok(rows)
    }

    /// The prefix IPv6 sources are tracked at (what a source key means).
    fn ipv6_prefix(&self) -> Result<u8, OpError> {
        let cfg = self.kernel.config().map_err(OpError::kernel)?;
        Ok(cfg.ipv6_prefix_len.clamp(1, 128) as u8)
    }

    fn sources(&self, sort: SourceSort, limit: usize) -> Result<Vec<SourceRow>, OpError> {
        let prefix = self.ipv6_prefix()?;
        let snap = self.kernel.snapshot().map_err(OpError::kernel)?;
        let now = clock::monotonic_ns();
        let ago = |ns: u64| now.saturating_sub(ns) as f64 / 1e9;
        let mut rows: Vec<SourceRow> = snap
            .sources
            .iter()
            .map(|(k, c)| SourceRow {
                source: source_net(k, prefix),
                syn: c.syn,
                syn_ack: c.syn_ack,
                ack: c.ack,
                rst: c.rst,
                fin: c.fin,
                unparsed: c.unparsed,
                in_connection: c.in_conn,
                new_connections: c.new_conns,
                empty_connections: c.empty_conns,
                closed_ports: c.closed_ports,
                rate_limited: c.limited,
                packets: c.packets,
                bytes: c.bytes,
                first_seen_s_ago: ago(c.first_seen_ns),
                last_seen_s_ago: ago(c.last_seen_ns),
            })
            .collect();
        rows.sort_by(|a, b| b.key(sort).cmp(&a.key(sort)).then(a.source.cmp(&b.source)));
        if limit > 0 {
            rows.truncate(limit);
        }
        Ok(rows)
    }

    /// Sources ranked by `by`, rates from `prev` to a reading taken now.
    pub fn top_since(
        &self,
        prev: &Snapshot,
        by: TopBy,
        limit: usize,
    ) -> Result<TopReport, OpError> {
        let cur = self.kernel.snapshot().map_err(OpError::kernel)?;
        Ok(top(prev, &cur, self.ipv6_prefix()?, by, limit))
    }
}

/// Refuses a network with host bits set (`10.0.0.5/24`): the entry would
/// not be the one the operator thinks.
fn exact(net: IpNet) -> Result<IpNet, OpError> {
    parse_net(&net.to_string()).map_err(|e| OpError::bad_input(e.to_string()))
}

/// Sources ranked by `by`, rates between two readings.
pub fn top(prev: &Snapshot, cur: &Snapshot, prefix: u8, by: TopBy, limit: usize) -> TopReport {
    use crate::detect::{rates, EMPTY_CONNECTIONS, NEW_CONNECTIONS};
    use filter_common::flag;
    let dt = Duration::from_nanos(cur.at_ns.saturating_sub(prev.at_ns));
    let secs = dt.as_secs_f64().max(1e-3);
    let mut rows: Vec<TopRow> = cur
        .sources
        .iter()
        .map(|(k, c)| {
            let p = prev
                .sources
                .get(k)
                .filter(|p| p.first_seen_ns == c.first_seen_ns);
            let r = rates(p, c, dt);
            let (pkts, limited, in_conn) =
                p.map_or((0, 0, 0), |p| (p.packets, p.limited, p.in_conn));
            TopRow {
                source: source_net(k, prefix),
                syn: r[flag::SYN],
                syn_ack: r[flag::SYN_ACK],
                ack: r[flag::ACK],
                rst: r[flag::RST],
                fin: r[flag::FIN],
                new_connections: r[NEW_CONNECTIONS],
                empty_connections: r[EMPTY_CONNECTIONS],
                in_connection_pps: c.in_conn.saturating_sub(in_conn) as f64 / secs,
                pps: c.packets.saturating_sub(pkts) as f64 / secs,
                limited_pps: c.limited.saturating_sub(limited) as f64 / secs,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.key(by)
            .total_cmp(&a.key(by))
            .then_with(|| a.source.cmp(&b.source))
    });
    rows.truncate(limit);
    TopReport {
        tracked: cur.sources.len(),
        window_ms: dt.as_millis() as u64,
        rows,
    }
}
