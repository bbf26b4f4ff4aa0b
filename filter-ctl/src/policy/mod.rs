//! The YAML policy: parsing, validation, defaults.
//!
//! Values that can be wrong on their own (a CIDR, a duration, a prefix
//! length) are newtypes that validate while deserializing, so serde_yaml's
//! error names the field path and the line. Checks across fields run after
//! parsing and name the line of the field they blame.

use std::{path::PathBuf, time::Duration};

use filter_common::{port_mode, Config, RateLimit, MAX_RATE_PPS};
use serde::{Deserialize, Serialize};

mod attach;
mod ports;
mod thresholds;
mod units;
mod verification;

pub use attach::{AttachMode, DEFAULT_PIN_DIR};
pub use ports::{PortSet, Ports};
pub use thresholds::{Limit, RateLimits, Thresholds};
pub use units::{Dur, Net};
pub use verification::{AutoMechanism, CookieRoute, Verification, VerifyMode};

/// The whole policy. Every field has a default (see [`DEFAULT_POLICY`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub interfaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub interval: Dur,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
    pub detach_on_exit: bool,
    pub allow: Vec<Net>,
    pub block: Vec<Net>,
    pub ipv6_prefix: u8,
    pub track_min_packets: u32,
    pub ports: Ports,
    pub connections: Connections,
    pub thresholds: Thresholds,
    pub rate_limit: RateLimits,
    pub blocking: Blocking,
    pub capacities: Capacities,
    pub audit: Audit,
    pub verification: Verification,
    /// The HTTPS API; off unless configured.
    pub api: Option<Api>,
    /// Alerts to a webhook; off unless configured.
    pub alerts: Option<Alerts>,
}

/// `alerts:`: a JSON POST per promotion, verification switch or lost
/// interface, to an `https://` URL only, its certificate always verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    pub webhook: String,
    /// A CA (PEM) to trust for the receiver instead of the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Alerts waiting for delivery at most; more are dropped (and counted)
    /// so that a dead receiver never slows the control loop.
    #[serde(default = "default_alert_queue")]
    pub queue: usize,
}

fn default_alert_queue() -> usize {
    1_000
}

/// `api:`: the HTTPS API (docs/operations.md). TLS only: there is no
/// plaintext listener; a missing or mismatched certificate or key, or a
/// key file others may read, refuses the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Address and port to listen on (e.g. `"10.0.0.5:8443"`).
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain and private key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The API keys (`filter-ctl api-key add`), root's, mode 0600.
    #[serde(default = "default_keys_file")]
    pub keys_file: PathBuf,
    /// JSON lines, one per request: time, client, key name, method, path,
    /// status, latency. Rotated daily, deleted after `access_retention`.
    #[serde(default = "default_access_log")]
    pub access_log: PathBuf,
    #[serde(default = "default_access_retention")]
    pub access_retention: Dur,
    /// Mutual TLS: clients must also present a certificate from this CA
    /// (PEM); keys are still required.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_access_log() -> PathBuf {
    PathBuf::from("/var/log/filter/access.jsonl")
}

fn default_access_retention() -> Dur {
    Dur::secs(30 * 86_400)
}

fn default_keys_file() -> PathBuf {
    PathBuf::from(DEFAULT_KEYS_FILE)
}

/// Where the API keys are kept unless `api.keys_file` says otherwise.
pub const DEFAULT_KEYS_FILE: &str = "/etc/filter/api-keys.yaml";

/// How the controller judges the connections the host holds (from the
/// kernel's socket tables, every interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connections {
    /// A connection on which the source has sent nothing for this long
    /// since the handshake is idle (`thresholds.idle_connections`).
    pub idle_after: Dur,
    /// A connection at least this old on which the source has sent data
    /// at less than `slow_rate` bytes/s on average, while the host has sent
    /// back no more than it received, is slow (`thresholds.slow_connections`).
    pub slow_after: Dur,
    pub slow_rate: u64,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            idle_after: Dur::secs(10),
            slow_after: Dur::secs(30),
            slow_rate: 64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Blocking {
    /// Block duration of a first promotion.
    pub ttl: Dur,
    /// Each further promotion of the same source multiplies the TTL.
    pub escalation: f64,
    /// Upper bound of an escalated TTL.
    pub max_ttl: Dur,
    /// A source with no promotion for this long starts again at `ttl`.
    pub forget_after: Dur,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking {
            ttl: Dur::secs(600),
            escalation: 2.0,
            max_ttl: Dur::secs(24 * 3600),
            forget_after: Dur::secs(7 * 24 * 3600),
        }
    }
}

/// Map sizes, used when the maps are created (pinned maps keep theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacities {
    pub sources: u32,
    pub block_exact: u32,
    pub block_net: u32,
    pub allow: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        use filter_common::capacity as c;
        Capacities {
            sources: c::SOURCES,
            block_exact: c::BLOCK_EXACT,
            block_net: c::BLOCK_NET,
            allow: c::ALLOW,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// JSON-lines log of promotions, expiries and admin actions.
    pub path: PathBuf,
    /// Lines older than this are deleted (at start, then hourly).
    pub retention: Dur,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            path: PathBuf::from(DEFAULT_AUDIT_LOG),
            retention: Dur::secs(180 * 86_400),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interfaces: Vec::new(),
            xdp_mode: AttachMode::Auto,
            interval: Dur::secs(1),
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            state_dir: PathBuf::from("/var/lib/filter"),
            control_socket: PathBuf::from(DEFAULT_SOCKET),
            detach_on_exit: false,
            allow: Vec::new(),
            block: Vec::new(),
            ipv6_prefix: filter_common::DEFAULT_IPV6_PREFIX as u8,
            track_min_packets: filter_common::DEFAULT_TRACK_MIN_PACKETS,
            ports: Ports::default(),
            connections: Connections::default(),
            thresholds: Thresholds::default(),
            rate_limit: RateLimits::default(),
            blocking: Blocking::default(),
            capacities: Capacities::default(),
            audit: Audit::default(),
            verification: Verification::default(),
            api: None,
            alerts: None,
        }
    }
}

/// Where the controller listens for the admin CLI.
pub const DEFAULT_SOCKET: &str = "/run/filter/ctl.sock";
/// Shortest IPv6 prefix sources may be counted per (an ISP's allocation).
pub const MIN_IPV6_PREFIX: u8 = 32;
/// Highest `track_min_packets`: well inside the sketch's 24-bit counters.
pub const MAX_TRACK_MIN_PACKETS: u32 = 1_000_000;
/// Longest TTL anywhere (blocks, promotions): ten years. No expiry is
/// written as 0, not as a huge duration.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);
/// Largest map size the policy may ask for (each entry costs kernel memory
/// at creation, per CPU for the sources).
pub const MAX_CAPACITY: u32 = 1 << 24;
pub const MAX_ALLOW_CAPACITY: u32 = 1 << 20;

/// Where the audit log goes unless the policy says otherwise.
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/filter/audit.jsonl";

/// The default policy, commented; `filter-ctl policy defaults` prints it
/// and a test checks it parses to exactly [`Policy::default`].
pub const DEFAULT_POLICY: &str = r#"# filter-ctl policy. Every key is optional; shown here with its default.

# Interfaces to attach to (required for `filter-ctl run`, or pass --interface).
interfaces: []
# auto (native where the driver supports it) | native | skb
xdp_mode: auto
# How often the controller reads the counters and decides.
interval: 1s
# bpffs directory for the pinned program link and maps; a restarted
# controller re-adopts them with every entry and counter intact.
pin_dir: /sys/fs/bpf/filter
# Runtime state that survives restarts: threshold overrides, offender history.
state_dir: /var/lib/filter
# Root-only Unix socket the admin CLI talks to.
control_socket: /run/filter/ctl.sock
# Keep the XDP program attached when the controller exits (false) so the
# host stays protected, or detach on SIGTERM/SIGINT (true).
detach_on_exit: false

# Never blocked, never promoted: put your management networks here.
allow: []
# Always dropped (policy entries are re-applied on start and reload).
block: []

# IPv6 sources are counted per prefix of this length (32-128).
ipv6_prefix: 64
# Packets a new source must send within ~1 s before it is counted on its own.
track_min_packets: 4

# Closed-port policy: a SYN (or UDP datagram) to a port that is not open is
# dropped in XDP and counted per source. off | auto (open = the host has a
# socket on it) | a list such as [22, 80, 443, 8000-8100]. `auto` sees only
# this network namespace: leave it off on a router or a container host.
ports:
  tcp: off
  udp: off

# Connections the host holds, read from the kernel's socket tables every
# interval: one on which the source has sent nothing and acknowledged
# nothing for idle_after since the handshake is idle
# (thresholds.idle_connections); one at least
# slow_after old that the source trickles data into at under slow_rate
# bytes/s, with no more sent back, is slow (thresholds.slow_connections).
connections:
  idle_after: 10s
  slow_after: 30s
  slow_rate: 64     # bytes/s

# Per source, per second: a source above any of these is promoted. 0 = off.
# Every packet class except syn counts *stray* packets only: those that
# belong to no connection of this host (the kernel's socket look-up), so a
# download, an upload or many parallel connections never count here.
# Evidence a spoofed address can produce restricts only that kind of packet
# from the source (its connections keep working); evidence from completed
# handshakes blocks it. See docs/detection.md.
thresholds:
  syn: 200               # SYNs that did not complete a handshake (restricts SYNs)
  syn_ack: 20            # stray SYN-ACKs (restricts them)
  ack: 5000              # stray ACKs, with or without payload (restricts them)
  rst: 100               # stray RSTs (restricts them)
  fin: 100               # stray FINs (restricts them)
  unparsed: 100          # TCP fragments, over-long IPv6 chains (restricts them)
  new_connections: 0     # completed handshakes; busy clients and NATs exceed any value (blocks)
  empty_connections: 50  # connections closed before the source sent data (blocks)
  closed_ports: 10       # distinct closed ports in ~1 s, a port scan (restricts SYNs; needs ports:)
  idle_connections: 100  # connections held open with no data (a count, not a rate; blocks)
  concurrent_connections: 0  # inbound connections held open (a count; NAT gateways hold thousands; blocks)
  slow_connections: 0    # slow connections held (a count; long-poll and WebSocket clients look the same; blocks)

# In-kernel token bucket per source and class (per CPU), so a flood is cut
# within packets, before the controller's next tick. Applies to stray
# packets (and to SYNs; a SYN that completes its handshake gives its token
# back). rate 0 = off.
rate_limit:
  syn: { rate: 400, burst: 400 }
  syn_ack: { rate: 40, burst: 40 }
  ack: { rate: 10000, burst: 10000 }
  rst: { rate: 200, burst: 200 }
  fin: { rate: 200, burst: 200 }
  unparsed: { rate: 200, burst: 200 }

blocking:
  ttl: 10m           # first offence
  escalation: 2.0    # each repeat multiplies the TTL...
  max_ttl: 1day      # ...up to this
  forget_after: 7days

# Map sizes when the maps are first created. Each tracked source takes
# 320 bytes per CPU (the counters are per CPU): 65536 sources are 21 MB
# per CPU, a million 335 MB per CPU. The controller's cost does not grow
# with it (detection events; docs/benchmarks.md).
capacities:
  sources: 65536
  block_exact: 262144
  block_net: 65536
  allow: 4096

audit:
  path: /var/log/filter/audit.jsonl
  retention: 180days   # rotated daily; older days and lines are deleted (at start, then hourly)

# Source verification: a source proves it is real before its SYNs reach
# the host's listeners: by returning the cookie of a SYN-ACK the filter
# sends itself (syn_cookie), or by retransmitting its first SYN, which is
# dropped (first_syn_drop). Spoofed SYN floods do neither. Allowlisted
# sources are never challenged; connections already open are never touched.
verification:
  mode: off              # off | syn_cookie | first_syn_drop (always) | auto (under a SYN flood)
  route: auto            # syn_cookie: transparent (Linux 6.9+: own cookie, every TCP option) | listener | auto
  auto_mechanism: syn_cookie   # what auto switches on: syn_cookie | first_syn_drop | escalate
  escalate_retry_rate: 1000    # escalate: first_syn_drop, then syn_cookie once retransmitted SYNs/s reach this
  alarm_syn_rate: 5000   # auto: on when SYNs/s from all sources reach this
  calm_syn_rate: 1000    # ...and off once below this
  hold: 30s              # ...for this long
  retry_min: 200ms       # a retransmission this long after the first SYN...
  retry_max: 4s          # ...and no later verifies the source
  verified_ttl: 1h       # how long a verified source stays verified

# The HTTPS API, off unless set: TLS 1.2/1.3 only (no plaintext port),
# bearer API keys with a read or admin scope (`filter-ctl api-key add`).
# `filter-ctl tls self-signed --out DIR` makes a certificate for test rigs.
# api:
#   listen: "10.0.0.5:8443"
#   cert: /etc/filter/tls/cert.pem
#   key: /etc/filter/tls/key.pem
#   keys_file: /etc/filter/api-keys.yaml
#   access_log: /var/log/filter/access.jsonl   # rotated daily
#   access_retention: 30days
#   client_ca: /etc/filter/tls/clients-ca.pem   # mutual TLS (optional)

# Alerts, off unless set: a JSON POST per promotion, verification switch or
# lost interface; https:// only, the receiver's certificate always checked.
# alerts:
#   webhook: https://alerts.example.net/filter
#   ca: /etc/filter/alerts-ca.pem   # instead of the system's CAs
#   queue: 1000                     # undelivered alerts kept at most
"#;

/// A policy error: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct PolicyError {
    pub origin: String,
    pub message: String,
}

impl Policy {
    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let err = |message: String| PolicyError {
            origin: origin.to_owned(),
            message,
        };
        // An empty file is the default policy.
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| err(locate(e.to_string(), text)))?
        };
        policy.validate(text).map_err(err)?;
        Ok(policy)
    }

    /// Reads, parses and validates a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Policy::parse(&text, &origin)
    }

    /// Checks across fields; the message names the field and its line.
    fn validate(&self, text: &str) -> Result<(), String> {
        let at = |path: &str| -> String {
            let key = path.rsplit('.').next().unwrap_or(path);
            match line_of(text, key) {
                Some(line) => format!("{path} (line {line})"),
                None => path.to_owned(),
            }
        };
        let interval = self.interval.0;
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(60) {
            return Err(format!(
                "{}: must be between 100ms and 60s, got {}",
                at("interval"),
                self.interval
            ));
        }
        if !(MIN_IPV6_PREFIX..=128).contains(&self.ipv6_prefix) {
            return Err(format!(
                "{}: must be {MIN_IPV6_PREFIX} to 128, got {} (a shorter prefix would count, and \
                 block, whole providers as one source)",
                at("ipv6_prefix"),
                self.ipv6_prefix
            ));
        }
        if !(1..=MAX_TRACK_MIN_PACKETS).contains(&self.track_min_packets) {
            return Err(format!(
                "{}: must be 1 to {MAX_TRACK_MIN_PACKETS}, got {} (the sketch counts no higher)",
                at("track_min_packets"),
                self.track_min_packets
            ));
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ', '\0']) {
                return Err(format!(
                    "{}: '{iface}' is not an interface name",
                    at(&format!("interfaces[{i}]"))
                ));
            }
        }
        let b = &self.blocking;
        if b.ttl.0.is_zero() {
            return Err(format!("{}: must be more than 0", at("blocking.ttl")));
        }
        if !b.escalation.is_finite() || b.escalation < 1.0 {
            return Err(format!(
                "{}: must be a number >= 1.0, got {}",
                at("blocking.escalation"),
                b.escalation
            ));
        }
        for (name, d) in [("blocking.ttl", b.ttl), ("blocking.max_ttl", b.max_ttl)] {
            if d.0 > MAX_TTL {
                return Err(format!(
                    "{}: at most {} days, got {d}",
                    at(name),
                    MAX_TTL.as_secs() / 86_400
                ));
            }
        }
        if b.max_ttl < b.ttl {
            return Err(format!(
                "{}: {} is shorter than blocking.ttl ({})",
                at("blocking.max_ttl"),
                b.max_ttl,
                b.ttl
            ));
        }
        if self.thresholds.closed_ports > filter_common::MAX_SCAN_PORTS as u64 {
            return Err(format!(
                "{}: at most {} distinct ports can be told apart, got {}",
                at("thresholds.closed_ports"),
                filter_common::MAX_SCAN_PORTS,
                self.thresholds.closed_ports
            ));
        }
        for (name, l) in self.rate_limit.by_class() {
            if l.rate > MAX_RATE_PPS {
                return Err(format!(
                    "{}: rate {} is above the maximum {MAX_RATE_PPS}",
                    at(&format!("rate_limit.{name}")),
                    l.rate
                ));
            }
            if l.rate > 0 && l.burst == 0 {
                return Err(format!(
                    "{}: burst must be at least 1 when rate is set",
                    at(&format!("rate_limit.{name}"))
                ));
            }
        }
        for (name, d) in [
            ("idle_after", self.connections.idle_after),
            ("slow_after", self.connections.slow_after),
        ] {
            if d.0 < Duration::from_secs(1) || d.0 > Duration::from_secs(3600) {
                return Err(format!(
                    "{}: must be between 1s and 1h, got {d}",
                    at(&format!("connections.{name}"))
                ));
            }
        }
        if self.audit.retention.0 < Duration::from_secs(3600) {
            return Err(format!(
                "{}: must be at least 1h, got {}",
                at("audit.retention"),
                self.audit.retention
            ));
        }
        self.verification.validate(at)?;
        if let Some(a) = &self.alerts {
            let https = a
                .webhook
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !https || a.webhook.parse::<hyper::Uri>().is_err() {
                return Err(format!(
                    "{}: must be an https:// URL (alerts never go out in plaintext), got {:?}",
                    at("alerts.webhook"),
                    a.webhook
                ));
            }
            if a.queue == 0 || a.queue > 1_000_000 {
                return Err(format!(
                    "{}: must be 1 to 1000000, got {}",
                    at("alerts.queue"),
                    a.queue
                ));
            }
        }
        let c = &self.capacities;
        for (name, v, max) in [
            ("sources", c.sources, MAX_CAPACITY),
            ("block_exact", c.block_exact, MAX_CAPACITY),
            ("block_net", c.block_net, MAX_CAPACITY),
            ("allow", c.allow, MAX_ALLOW_CAPACITY),
        ] {
            if v == 0 || v > max {
                return Err(format!(
                    "{}: must be 1 to {max}, got {v}",
                    at(&format!("capacities.{name}"))
                ));
            }
        }
        // Each list must fit its maps (per address family; single
        // addresses and prefixes of the block list go to different maps),
        // or a reload would stop half way through writing it.
        let count = |nets: &[Net], v6: bool, host: Option<bool>| {
            nets.iter()
                .filter(|n| matches!(n.0, ipnet::IpNet::V6(_)) == v6)
                .filter(|n| host.is_none_or(|h| crate::model::addr::is_host(&n.0) == h))
                .count()
        };
        for v6 in [false, true] {
            let family = if v6 { "IPv6" } else { "IPv4" };
            for (list, key, n, cap) in [
                ("allow", "allow", count(&self.allow, v6, None), c.allow),
                (
                    "block",
                    "block_exact",
                    count(&self.block, v6, Some(true)),
                    c.block_exact,
                ),
                (
                    "block",
                    "block_net",
                    count(&self.block, v6, Some(false)),
                    c.block_net,
                ),
            ] {
                if n as u64 > cap as u64 {
                    return Err(format!(
                        "{}: {n} {family} entries do not fit capacities.{key} ({cap}); raise it (it applies when the maps are created)",
                        at(list)
                    ));
                }
            }
        }
        for a in &self.allow {
            if let Some(b) = self
                .block
                .iter()
                .find(|b| b.0.contains(&a.0) || a.0.contains(&b.0))
            {
                return Err(format!(
                    "{}: {} overlaps block entry {} (the allowlist would win; remove one)",
                    at("allow"),
                    a.0,
                    b.0
                ));
            }
        }
        Ok(())
    }

    /// The data-path configuration this policy asks for, with the
    /// thresholds in force (the kernel counts port scans against
    /// `closed_ports`).
    /// `cpus`: how many CPUs the data path's per-CPU counts are spread
    /// over (the detection triggers are shares of the thresholds).
    pub fn kernel_config(&self, thresholds: &Thresholds, cpus: u32) -> Config {
        Config {
            ipv6_prefix_len: self.ipv6_prefix.into(),
            track_min_packets: self.track_min_packets,
            limits: self.rate_limit.by_class().map(|(_, x)| RateLimit {
                rate: x.rate,
                burst: x.burst,
            }),
            tcp_ports: self.ports.tcp.mode(),
            udp_ports: self.ports.udp.mode(),
            // The check is off when its threshold is, or when no port is
            // ever closed.
            scan_ports: match self.ports.tcp.mode() | self.ports.udp.mode() {
                port_mode::OFF => 0,
                _ => thresholds.closed_ports as u32,
            },
            window_ns: self.interval.0.as_nanos() as u64,
            trigger: thresholds.triggers(self.interval.0, cpus),
            ..Config::default()
        }
    }
}

/// serde_yaml leaves the location out of some errors raised by our own
/// validating types; then point at the line holding the quoted bad value.
fn locate(message: String, text: &str) -> String {
    if message.contains(" line ") {
        return message;
    }
    let quoted = message.split('\'').nth(1).filter(|q| !q.is_empty());
    match quoted.and_then(|q| text.lines().position(|l| l.contains(q))) {
        Some(i) => format!("{message} (line {})", i + 1),
        None => message,
    }
}

/// 1-based line of the first `key:` in `text`, in block or flow style
/// (`key: 1` or `{ other: 2, key: 1 }`).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let key = key.split('[').next().unwrap_or(key);
    let needle = format!("{key}:");
    text.lines()
        .position(|l| {
            l.match_indices(&needle).any(|(i, _)| {
                l[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            })
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests;
