//! Detection: pure functions over counter snapshots. Time is always passed
//! in, so tests drive them with a fake clock.

use std::{collections::HashMap, time::Duration};

use filter_common::{flag, window, SourceCounters, SourceKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::model::metric::*;
use crate::{kernel::conns::Held, policy::Blocking};

/// Counters behind each rate metric (for `top`'s rates between two
/// readings). `syn` is SYNs minus completed handshakes; `closed_ports`
/// counts the epochs in which the source was seen scanning; the gauges are
/// not counters (0 here).
fn metrics(c: &SourceCounters) -> [u64; METRIC_COUNT] {
    [
        c.syn,
        c.syn_ack,
        c.ack,
        c.rst,
        c.fin,
        c.unparsed,
        c.new_conns,
        c.empty_conns,
        c.scans,
        0,
        0,
        0,
    ]
}

/// Whether a metric is a gauge of held connections (a count now) rather
/// than a rate.
const fn is_gauge(metric: usize) -> bool {
    matches!(
        metric,
        IDLE_CONNECTIONS | CONCURRENT_CONNECTIONS | SLOW_CONNECTIONS
    )
}

/// What promoting a source on `metric` writes: 0 (a block of everything)
/// when the evidence needs a completed handshake, which a spoofed address
/// cannot produce; otherwise a restriction of the packets that were the
/// evidence (the `scope` bits of a list entry), so that packets forged in
/// someone's name cost that someone nothing but those packets.
pub const fn scope_of(metric: usize) -> u32 {
    match metric {
        NEW_CONNECTIONS | EMPTY_CONNECTIONS => 0,
        IDLE_CONNECTIONS | CONCURRENT_CONNECTIONS | SLOW_CONNECTIONS => 0,
        CLOSED_PORTS => flag::bit(flag::SYN),
        class => flag::bit(class),
    }
}

/// Per-second rate of each metric between two readings of one source. An
/// entry that was evicted and re-created in between (different first-seen,
/// or counters that went down) counts from zero. SYNs that completed their
/// handshake are not counted against `syn`.
pub fn rates(
    prev: Option<&SourceCounters>,
    cur: &SourceCounters,
    dt: Duration,
) -> [f64; METRIC_COUNT] {
    let secs = dt.as_secs_f64().max(1e-3);
    let now = metrics(cur);
    let before = match prev {
        Some(p) if p.first_seen_ns == cur.first_seen_ns && p.packets <= cur.packets => metrics(p),
        _ => [0; METRIC_COUNT],
    };
    let mut delta = [0u64; METRIC_COUNT];
    for i in 0..METRIC_COUNT {
        delta[i] = now[i].saturating_sub(before[i]);
    }
    delta[flag::SYN] = delta[flag::SYN].saturating_sub(delta[NEW_CONNECTIONS]);
    delta.map(|d| d as f64 / secs)
}

/// A source over a threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub key: SourceKey,
    /// Metric (index into [`METRICS`]).
    pub metric: usize,
    pub rate: f64,
    pub threshold: u64,
}

impl Detection {
    pub fn metric_name(&self) -> &'static str {
        METRICS[self.metric]
    }

    /// The reason recorded in the audit log (`syn_flood`, `port_scan`,
    /// `idle_connections`).
    pub fn reason(&self) -> String {
        match self.metric {
            CLOSED_PORTS => "port_scan".to_owned(),
            m if is_gauge(m) => METRICS[m].to_owned(),
            m => format!("{}_flood", METRICS[m]),
        }
    }

    /// One line for the list entry's note and the log.
    pub fn note(&self) -> String {
        match self.metric {
            CLOSED_PORTS => format!(
                "port_scan {:.0} closed ports > {}",
                self.rate, self.threshold
            ),
            m if is_gauge(m) => format!(
                "{} {:.0} > {}",
                self.metric_name(),
                self.rate,
                self.threshold
            ),
            _ => format!(
                "{} {:.0}/s > {}/s",
                self.metric_name(),
                self.rate,
                self.threshold
            ),
        }
    }

    /// See [`scope_of`].
    pub fn scope(&self) -> u32 {
        scope_of(self.metric)
    }
}

/// A source's detection-window counts ([`window`] metrics), summed over
/// its CPUs: the window now running (so far) and the complete one before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Windows {
    pub cur: [u64; window::METRICS],
    pub prev: [u64; window::METRICS],
}

/// Sums a source's per-CPU window counts as of window `now_win`. A CPU
/// still on the window before has its counts in `prev`; one further back
/// (or on none) contributes nothing.
pub fn window_counts(per_cpu: &[SourceCounters], now_win: u32) -> Windows {
    let mut w = Windows::default();
    for c in per_cpu {
        let (cur, prev) = if c.win_id == now_win {
            (Some(&c.win), Some(&c.prev_win))
        } else if c.win_id.wrapping_add(1) == now_win {
            (None, Some(&c.win))
        } else {
            (None, None)
        };
        for (sum, add) in [(&mut w.cur, cur), (&mut w.prev, prev)] {
            if let Some(add) = add {
                for (s, a) in sum.iter_mut().zip(add) {
                    *s += *a as u64;
                }
            }
        }
    }
    w
}

/// The detection window of `now_ns` (monotonic), as the data path numbers
/// them for a window of `window`.
pub fn window_of(now_ns: u64, window: Duration) -> u32 {
    (now_ns / (window.as_nanos() as u64).max(1)) as u32
}

/// The window metrics of `w` over their threshold (0 = check off): a
/// count above `threshold × window` in the running window so far or in the
/// complete one before. The one rule, for [`detect`] and the full scan.
pub fn over_metrics<'a>(
    w: &'a Windows,
    thresholds: &'a [u64; METRIC_COUNT],
    window: Duration,
) -> impl Iterator<Item = usize> + 'a {
    let secs = window.as_secs_f64().max(1e-3);
    (0..window::METRICS).filter(move |&m| {
        thresholds[m] > 0 && w.cur[m].max(w.prev[m]) as f64 > thresholds[m] as f64 * secs
    })
}

/// Every (source, metric) over its threshold (0 = check off): a window
/// count above `threshold × window` in the running window so far or in the
/// complete one before; every source the kernel reported scanning
/// (`scans`: distinct closed ports it touched in one epoch, judged by the
/// kernel against `closed_ports`); every source holding more connections
/// than a gauge allows (`held`, from [`crate::kernel::conns`]). Sorted by
/// source, then most serious first: a metric that blocks before one that
/// restricts, then the one most over its threshold.
pub fn detect(
    sources: &[(SourceKey, Windows)],
    scans: &[(SourceKey, u32)],
    held: &HashMap<SourceKey, Held>,
    thresholds: [u64; METRIC_COUNT],
    window: Duration,
) -> Vec<Detection> {
    let secs = window.as_secs_f64().max(1e-3);
    let mut out: Vec<Detection> = Vec::new();
    for (key, w) in sources {
        for m in over_metrics(w, &thresholds, window) {
            let count = w.cur[m].max(w.prev[m]) as f64;
            out.push(Detection {
                key: *key,
                metric: m,
                rate: count / secs,
                threshold: thresholds[m],
            });
        }
    }
    if thresholds[CLOSED_PORTS] > 0 {
        let mut widest: HashMap<SourceKey, u32> = HashMap::new();
        for (key, ports) in scans {
            let w = widest.entry(*key).or_default();
            *w = (*w).max(*ports);
        }
        out.extend(widest.into_iter().map(|(key, ports)| Detection {
            key,
            metric: CLOSED_PORTS,
            rate: ports as f64,
            threshold: thresholds[CLOSED_PORTS],
        }));
    }
    for (key, h) in held {
        for (metric, value) in [
            (IDLE_CONNECTIONS, h.idle),
            (CONCURRENT_CONNECTIONS, h.established),
            (SLOW_CONNECTIONS, h.slow),
        ] {
            if thresholds[metric] > 0 && value > thresholds[metric] {
                out.push(Detection {
                    key: *key,
                    metric,
                    rate: value as f64,
                    threshold: thresholds[metric],
                });
            }
        }
    }
    let rank = |d: &Detection| {
        (
            scope_of(d.metric) == 0,
            d.rate / thresholds[d.metric].max(1) as f64,
        )
    };
    out.sort_by(|a, b| {
        let ((ba, ra), (bb, rb)) = (rank(a), rank(b));
        a.key.cmp(&b.key).then(bb.cmp(&ba)).then(rb.total_cmp(&ra))
    });
    out
}

/// A live block-list entry, as promotion sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub net: IpNet,
    /// 0: a block; else the restricted classes.
    pub scope: u32,
}

/// One promotion per source: the scope to write and the detection that
/// leads it (the most serious one that changes something). Never an
/// allowlisted source (whatever its rates), never one inside a block,
/// never a restriction the source already has; restrictions add up, and a
/// metric that blocks replaces them. `detections` as [`detect`] sorts them.
pub fn promotable(
    detections: Vec<Detection>,
    net_of: impl Fn(&SourceKey) -> IpNet,
    allow: &[IpNet],
    blocked: &[Listed],
) -> Vec<(IpNet, u32, Detection)> {
    // Indexed once: each detection then costs a few hash look-ups, not a
    // walk of every list entry (200 000 blocks × 10 000 detections).
    let allowed = NetIndex::new(allow.iter().copied());
    // Allow entries longer than a source's net, inside it (an allowed /128
    // inside a /64 source): few, walked longest first.
    let mut long_allow: Vec<IpNet> = allow.to_vec();
    long_allow.sort_by_key(|a| std::cmp::Reverse(a.prefix_len()));
    let blocks = NetIndex::new(blocked.iter().filter(|b| b.scope == 0).map(|b| b.net));
    let scopes: HashMap<IpNet, u32> = blocked.iter().map(|b| (b.net, b.scope)).collect();
    let mut out: Vec<(IpNet, u32, Detection)> = Vec::new();
    let mut had = 0;
    for d in detections {
        let net = net_of(&d.key);
        let allow_inside = long_allow
            .iter()
            .take_while(|a| a.prefix_len() > net.prefix_len())
            .any(|a| net.contains(a));
        if allowed.covers(&net) || allow_inside || blocks.covers(&net) {
            continue;
        }
        match out.last_mut() {
            // A later detection of the same source adds its classes to a
            // restriction (a block already covers them).
            Some((n, scope, _)) if *n == net => {
                if *scope != 0 {
                    *scope |= d.scope();
                }
            }
            _ => {
                had = scopes.get(&net).copied().unwrap_or(0);
                let scope = match d.scope() {
                    0 => 0,
                    s => s | had,
                };
                out.push((net, scope, d));
            }
        }
        // The lead detection must itself change something: drop a source
        // whose detections so far add nothing, so the next can lead.
        if let Some((n, scope, _)) = out.last() {
            if *n == net && *scope != 0 && *scope == had {
                out.pop();
            }
        }
    }
    out
}

/// A set of networks that answers "is this net inside one of them?" with
/// one hash look-up per prefix length present.
pub struct NetIndex {
    /// (IPv6?, prefix length) of the members, each once.
    lens: Vec<(bool, u8)>,
    nets: std::collections::HashSet<IpNet>,
}

impl NetIndex {
    pub fn new(nets: impl Iterator<Item = IpNet>) -> NetIndex {
        let nets: std::collections::HashSet<IpNet> = nets.map(|n| n.trunc()).collect();
        let mut lens: Vec<(bool, u8)> = nets
            .iter()
            .map(|n| (matches!(n, IpNet::V6(_)), n.prefix_len()))
            .collect();
        lens.sort_unstable();
        lens.dedup();
        NetIndex { lens, nets }
    }

    /// Whether a member contains (or is) `net`.
    pub fn covers(&self, net: &IpNet) -> bool {
        let v6 = matches!(net, IpNet::V6(_));
        self.lens
            .iter()
            .filter(|&&(f, len)| f == v6 && len <= net.prefix_len())
            .any(|&(_, len)| {
                IpNet::new(net.addr(), len).is_ok_and(|n| self.nets.contains(&n.trunc()))
            })
    }
}

/// A source's history of promotions, for escalation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offense {
    /// Promotions so far (within `forget_after` of each other).
    pub count: u32,
    /// Wall-clock seconds of the last promotion.
    pub last_unix_s: u64,
}

/// Offender histories kept at most (about 4 MB of state).
pub const MAX_OFFENDERS: usize = 50_000;

/// Promotion history of every offender, keyed by network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offenders(pub HashMap<String, Offense>);

impl Offenders {
    /// Records a promotion of `net` at `now_unix_s` and returns its TTL:
    /// `ttl × escalation^(earlier promotions)`, capped at `max_ttl`. A source
    /// quiet for `forget_after` starts over.
    pub fn promote(&mut self, net: &IpNet, now_unix_s: u64, b: &Blocking) -> (Duration, u32) {
        let entry = self.0.entry(net.to_string()).or_default();
        if now_unix_s.saturating_sub(entry.last_unix_s) > b.forget_after.0.as_secs() {
            entry.count = 0;
        }
        let factor = b.escalation.powi(entry.count.min(64) as i32);
        let secs = (b.ttl.0.as_secs_f64() * factor).min(b.max_ttl.0.as_secs_f64());
        entry.count += 1;
        entry.last_unix_s = now_unix_s;
        let ttl = Duration::try_from_secs_f64(secs).unwrap_or(b.max_ttl.0);
        (ttl, entry.count)
    }

    /// Drops histories older than `forget_after`, and the oldest beyond
    /// [`MAX_OFFENDERS`] (a long random-source attack must not grow the
    /// state without bound; the ones dropped start over at the base TTL).
    pub fn prune(&mut self, now_unix_s: u64, b: &Blocking) {
        let keep = b.forget_after.0.as_secs();
        self.0
            .retain(|_, o| now_unix_s.saturating_sub(o.last_unix_s) <= keep);
        if self.0.len() > MAX_OFFENDERS {
            let mut ages: Vec<u64> = self.0.values().map(|o| o.last_unix_s).collect();
            let cut = ages.len() - MAX_OFFENDERS;
            let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
            // Ties at the cut may keep a few more; strictly older ones go.
            self.0.retain(|_, o| o.last_unix_s >= oldest_kept);
        }
    }
}

#[cfg(test)]
mod tests;
