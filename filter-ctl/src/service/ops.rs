//! The vocabulary of the service: every admin operation ([`Op`]), its
//! reply ([`Done`]) and its failure ([`OpError`]), and who asked
//! ([`Caller`]). The transports in `api/` carry these as they are (serde);
//! they never define their own.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    kernel::maps::{ListKind, ListedEntry, ReasonStats},
    model::metric::Metric,
};

/// One admin operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The running controller: interfaces, cycles, counts. Needs it.
    Status,
    /// Verdict totals per reason, and where the filter is attached.
    Stats,
    /// The entries of one list.
    List { list: ListKind },
    /// Tracked sources with their counters, largest `sort` first.
    Sources {
        sort: SourceSort,
        /// 0 = all.
        limit: usize,
    },
    /// Sources ranked by a rate. A running controller measures since its
    /// last cycle; with none, two readings `window` apart are taken.
    Top {
        by: TopBy,
        limit: usize,
        window: Duration,
    },
    /// Add or replace an entry (an admin entry).
    Add {
        list: ListKind,
        net: IpNet,
        ttl_s: Option<u64>,
        reason: String,
    },
    /// Remove an entry; [`ErrorKind::NotListed`] if it is not there.
    Remove { list: ListKind, net: IpNet },
    /// The effective thresholds. Needs the controller.
    Thresholds,
    /// Override one threshold (`None`: back to the policy's value). Needs
    /// the controller.
    SetThreshold { metric: Metric, value: Option<u64> },
    /// Re-read the policy file. Needs the controller.
    Reload,
    /// Set the verification mode (`None`: back to the policy's). Needs the
    /// controller.
    SetVerification {
        mode: Option<crate::policy::VerifyMode>,
    },
    /// The verified sources.
    Verified,
}

impl Op {
    /// Whether the operation changes anything (it is then audited).
    pub fn edits(&self) -> bool {
        matches!(
            self,
            Op::Add { .. }
                | Op::Remove { .. }
                | Op::SetThreshold { .. }
                | Op::Reload
                | Op::SetVerification { .. }
        )
    }
}

/// Who asked: recorded in the audit log with every change (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Caller {
    /// A client of the control socket (uid from the peer's credentials).
    Socket { uid: u32 },
    /// The CLI working on the pinned maps itself, no controller running.
    Offline { uid: u32 },
    /// The controller itself (policy lists, promotions).
    Controller,
    /// The HTTPS API: the name of the key used (never the key) and the
    /// client's address.
    Api { key: String, addr: String },
}

/// The reply to each [`Op`], in the same order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "done", rename_all = "snake_case")]
pub enum Done {
    Status(Box<StatusReport>),
    Stats(StatsReport),
    List {
        entries: Vec<ListedEntry>,
    },
    Sources {
        rows: Vec<SourceRow>,
    },
    Top(TopReport),
    Added {
        net: IpNet,
        ttl_s: Option<u64>,
    },
    Removed {
        net: IpNet,
    },
    Thresholds {
        rows: Vec<ThresholdRow>,
    },
    ThresholdSet {
        metric: Metric,
        old: u64,
        new: u64,
    },
    Reloaded {
        message: String,
    },
    VerificationSet {
        old: crate::policy::VerifyMode,
        new: crate::policy::VerifyMode,
    },
    Verified {
        rows: Vec<VerifiedRow>,
    },
}

/// A verified source and how long it stays verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRow {
    pub source: IpNet,
    pub expires_in_s: u64,
}

/// Source verification as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerificationStatus {
    pub mode: crate::policy::VerifyMode,
    /// What verifies a source, and where.
    pub mechanism: std::borrow::Cow<'static, str>,
    /// How `syn_cookie` works on this kernel (probed at start).
    pub route: String,
    /// Whether SYNs are being challenged now.
    pub active: bool,
    /// Seconds in the current state, and why it is in it.
    pub since_s: u64,
    pub why: String,
    /// SYNs per second over the last interval (offered load, all sources).
    pub syn_rate: f64,
    /// Since the maps were created: SYNs answered with a cookie SYN-ACK
    /// from XDP (`syn_cookie`); first SYNs dropped (`first_syn_drop`);
    /// sources verified (a valid cookie ACK, or a retransmission inside
    /// the window); challenges failed (a forged or expired cookie, or a SYN
    /// outside the window).
    pub cookies_sent: u64,
    pub dropped_unverified: u64,
    pub passed: u64,
    pub failed: u64,
    /// Transparent route: ACKs the TC program handed to a listener, and
    /// those the kernel refused (a route failing at run time).
    pub handed_over: u64,
    pub handover_failed: u64,
    pub verified_sources: usize,
}

impl Done {
    /// The reply was not the one the operation has (a client and a
    /// controller of different versions).
    pub fn unexpected(self) -> OpError {
        OpError::new(
            ErrorKind::Unavailable,
            format!("unexpected reply from the controller: {self:?}"),
        )
    }
}

/// What went wrong, as a client can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Remove of an entry that is not in the list.
    NotListed,
    /// An argument the service refuses (address, value, policy).
    BadInput,
    /// A map is full.
    Full,
    /// The caller lacks the privileges (EPERM/EACCES from the kernel).
    Denied,
    /// Any other failure of a kernel operation.
    Kernel,
    /// The operation needs the controller and none is running.
    NotRunning,
    /// The controller is stopping, did not answer, or answered nonsense.
    Unavailable,
}

/// A failed operation: a kind to match on, a message for the operator, and
/// the cause it came from, whose own causes are this error's sources (so
/// `{:#}` prints the chain once, and an errno is found in it). On the far
/// side of a transport only the kind and the whole text arrive.
#[derive(Debug)]
pub struct OpError {
    pub kind: ErrorKind,
    message: String,
    cause: Option<anyhow::Error>,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // `message` is the cause's own text; its sources follow.
        self.cause.as_ref().and_then(|c| c.source())
    }
}

impl OpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> OpError {
        OpError::new(ErrorKind::BadInput, message)
    }

    pub fn not_running(what: &str) -> OpError {
        OpError::new(
            ErrorKind::NotRunning,
            format!(
                "no controller is running, and {what} needs one; start it with \
                 `filter-ctl run --config FILE`"
            ),
        )
    }

    /// A kernel operation failed: the kind comes from the errno found in
    /// the cause chain (a full map, missing privileges), not from its text.
    pub fn kernel(err: impl Into<anyhow::Error>) -> OpError {
        let err: anyhow::Error = err.into();
        let errno = err.chain().find_map(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
        });
        let kind = match errno {
            Some(libc::E2BIG | libc::ENOSPC) => ErrorKind::Full,
            Some(libc::EPERM | libc::EACCES) => ErrorKind::Denied,
            _ => ErrorKind::Kernel,
        };
        let message = match kind {
            ErrorKind::Full => {
                format!("{err} (the map is full: raise its size under `capacities:` in the policy)")
            }
            _ => err.to_string(),
        };
        OpError {
            kind,
            message,
            cause: Some(err),
        }
    }

    /// The same error with another kind.
    pub fn with_kind(mut self, kind: ErrorKind) -> OpError {
        self.kind = kind;
        self
    }

    /// The whole text: the message and every cause, `: `-joined.
    pub fn text(&self) -> String {
        let mut text = self.message.clone();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        text
    }

    /// The form that crosses a transport.
    pub fn to_wire(&self) -> WireError {
        WireError {
            kind: self.kind,
            message: self.text(),
        }
    }
}

/// [`OpError`] on the wire: `{"kind": "not_listed", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<WireError> for OpError {
    fn from(w: WireError) -> OpError {
        OpError::new(w.kind, w.message)
    }
}

/// One reply as it travels: exactly one of `ok` and `err`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(Done),
    Err(WireError),
}

impl From<Result<Done, OpError>> for Reply {
    fn from(r: Result<Done, OpError>) -> Reply {
        match r {
            Ok(d) => Reply::Ok(d),
            Err(e) => Reply::Err(e.to_wire()),
        }
    }
}

impl From<Reply> for Result<Done, OpError> {
    fn from(r: Reply) -> Self {
        match r {
            Reply::Ok(d) => Ok(d),
            Reply::Err(e) => Err(e.into()),
        }
    }
}

/// The running controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub uptime_s: u64,
    pub policy: std::path::PathBuf,
    pub interfaces: Vec<String>,
    /// Interfaces whose filter is gone (detached from outside, device
    /// deleted): re-attached as soon as their device exists.
    pub lost_interfaces: Vec<String>,
    pub xdp_mode: crate::policy::AttachMode,
    pub interval_ms: u64,
    pub pin_dir: std::path::PathBuf,
    pub audit_log: std::path::PathBuf,
    /// Audit records that could not be written since the controller
    /// started (each is also logged).
    pub audit_write_errors: u64,
    /// Alerts dropped because the webhook's queue was full.
    pub alerts_dropped: u64,
    /// Lines the HTTPS API's access log could not write.
    pub access_log_write_errors: u64,
    pub cycles: u64,
    pub last_cycle_ms: f64,
    /// Cycle durations: cumulative counts at each bound of
    /// [`CYCLE_BUCKETS_S`], their count and sum (seconds).
    pub cycle_buckets: Vec<u64>,
    pub cycle_sum_s: f64,
    /// Packets per second by flag class over the tracked sources, last
    /// cycle.
    pub flag_rates: std::collections::BTreeMap<String, f64>,
    /// Promotions by reason (`syn_flood`, `port_scan`, ...).
    pub promotions_by_reason: std::collections::BTreeMap<String, u64>,
    /// How full the maps are: (name, entries, capacity).
    pub map_fill: Vec<(String, u64, u64)>,
    /// Sources with an exact entry: those the data path added, up to the
    /// map's capacity (at capacity it recycles the least recently seen).
    pub tracked_sources: usize,
    /// Detection events the data path pushed and the controller took.
    pub events: u64,
    /// Events the data path could not push (the ring was full); each loss
    /// makes the next cycle judge every source.
    pub events_lost: u64,
    /// Cycles that judged every source (the first, and after lost events).
    pub full_scans: u64,
    pub blocked_entries: usize,
    /// Live allowlist entries (as of the last cycle).
    pub allowed_entries: usize,
    pub promotions: u64,
    pub expiries: u64,
    /// Promotions skipped because the block list had no room outside the
    /// admin and policy reserve.
    pub promotions_skipped: u64,
    /// Promotions are being skipped now.
    pub block_list_full: bool,
    pub thresholds: Vec<ThresholdRow>,
    pub verification: VerificationStatus,
}

/// The upper bounds of the cycle-duration histogram, in seconds.
pub const CYCLE_BUCKETS_S: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// One threshold: effective value, the policy's, and whether an override
/// (`set threshold`) is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdRow {
    pub name: Metric,
    pub value: u64,
    pub policy: u64,
    pub overridden: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub attached: Vec<String>,
    pub reasons: Vec<ReasonStats>,
}

/// How `Op::Sources` orders the sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SourceSort {
    Packets,
    Bytes,
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    Unparsed,
    InConnection,
    NewConnections,
    EmptyConnections,
    ClosedPorts,
    RateLimited,
}

/// A tracked source's counters. Class counters other than `syn` count
/// stray packets only (matching no connection of the host).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRow {
    pub source: IpNet,
    pub syn: u64,
    pub syn_ack: u64,
    pub ack: u64,
    pub rst: u64,
    pub fin: u64,
    pub unparsed: u64,
    /// Packets of the host's connections.
    pub in_connection: u64,
    /// Completed handshakes.
    pub new_connections: u64,
    /// Connections closed before the source sent data.
    pub empty_connections: u64,
    /// SYNs and datagrams to closed ports.
    pub closed_ports: u64,
    /// Packets dropped by the source's rate limits.
    pub rate_limited: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds since the source was first / last counted.
    pub first_seen_s_ago: f64,
    pub last_seen_s_ago: f64,
}

impl SourceRow {
    pub fn key(&self, sort: SourceSort) -> u64 {
        match sort {
            SourceSort::Packets => self.packets,
            SourceSort::Bytes => self.bytes,
            SourceSort::Syn => self.syn,
            SourceSort::SynAck => self.syn_ack,
            SourceSort::Ack => self.ack,
            SourceSort::Rst => self.rst,
            SourceSort::Fin => self.fin,
            SourceSort::Unparsed => self.unparsed,
            SourceSort::InConnection => self.in_connection,
            SourceSort::NewConnections => self.new_connections,
            SourceSort::EmptyConnections => self.empty_connections,
            SourceSort::ClosedPorts => self.closed_ports,
            SourceSort::RateLimited => self.rate_limited,
        }
    }
}

/// What `Op::Top` ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    Syn,
    SynAck,
    Ack,
    Rst,
    Fin,
    NewConnections,
    EmptyConnections,
    Pps,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopReport {
    /// Sources tracked at the second reading.
    pub tracked: usize,
    /// What the rates are measured over.
    pub window_ms: u64,
    pub rows: Vec<TopRow>,
}

/// A source's rates (per second) over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    pub source: IpNet,
    pub syn: f64,
    pub syn_ack: f64,
    pub ack: f64,
    pub rst: f64,
    pub fin: f64,
    pub new_connections: f64,
    pub empty_connections: f64,
    /// Packets of the host's connections per second.
    pub in_connection_pps: f64,
    pub pps: f64,
    pub limited_pps: f64,
}

impl TopRow {
    pub fn key(&self, by: TopBy) -> f64 {
        match by {
            TopBy::Syn => self.syn,
            TopBy::SynAck => self.syn_ack,
            TopBy::Ack => self.ack,
            TopBy::Rst => self.rst,
            TopBy::Fin => self.fin,
            TopBy::NewConnections => self.new_connections,
            TopBy::EmptyConnections => self.empty_connections,
            TopBy::Pps => self.pps,
        }
    }
}
