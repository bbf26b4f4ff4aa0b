//! Detection: pure functions over counter snapshots. Time is always passed
//! in, so tests drive them with a fake clock.

use std::{collections::HashMap, time::Duration};

use filter_common::{flag, SourceCounters, SourceKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::Blocking;

/// Counters of every tracked source at one instant (monotonic ns).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub at_ns: u64,
    pub sources: HashMap<SourceKey, SourceCounters>,
}

/// What the detectors measure per source: the five flag classes (indexed
/// as [`flag`]) and completed handshakes.
pub const METRICS: [&str; METRIC_COUNT] =
    ["syn", "syn_ack", "ack", "rst", "fin", "new_connections"];
pub const METRIC_COUNT: usize = flag::COUNT + 1;
pub const NEW_CONNECTIONS: usize = flag::COUNT;

fn metrics(c: &SourceCounters) -> [u64; METRIC_COUNT] {
    [c.syn, c.syn_ack, c.ack, c.rst, c.fin, c.new_conns]
}

/// Per-second rate of each metric between two readings of one source. An
/// entry that was evicted and re-created in between (different first-seen,
/// or counters that went down) counts from zero.
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
    let mut out = [0.0; METRIC_COUNT];
    for i in 0..METRIC_COUNT {
        out[i] = now[i].saturating_sub(before[i]) as f64 / secs;
    }
    out
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
}

/// Every source whose rate of some metric exceeds its threshold (0 = check
/// off) between `prev` and `cur`. One detection per source: the metric most
/// over its threshold. Sorted by source for determinism.
pub fn detect(prev: &Snapshot, cur: &Snapshot, thresholds: [u64; METRIC_COUNT]) -> Vec<Detection> {
    let dt = Duration::from_nanos(cur.at_ns.saturating_sub(prev.at_ns));
    let mut out: Vec<Detection> = cur
        .sources
        .iter()
        .filter_map(|(key, c)| {
            let r = rates(prev.sources.get(key), c, dt);
            (0..METRIC_COUNT)
                .filter(|&i| thresholds[i] > 0 && r[i] > thresholds[i] as f64)
                .max_by(|&a, &b| {
                    (r[a] / thresholds[a] as f64).total_cmp(&(r[b] / thresholds[b] as f64))
                })
                .map(|i| Detection {
                    key: *key,
                    metric: i,
                    rate: r[i],
                    threshold: thresholds[i],
                })
        })
        .collect();
    out.sort_by_key(|d| d.key);
    out
}

/// Keeps the detections that may be promoted: never an allowlisted source
/// (whatever its rate), never one already blocked.
pub fn promotable(
    detections: Vec<Detection>,
    net_of: impl Fn(&SourceKey) -> IpNet,
    allow: &[IpNet],
    blocked: &[IpNet],
) -> Vec<(IpNet, Detection)> {
    detections
        .into_iter()
        .map(|d| (net_of(&d.key), d))
        .filter(|(net, _)| !allow.iter().any(|a| a.contains(net) || net.contains(a)))
        .filter(|(net, _)| !blocked.iter().any(|b| b.contains(net)))
        .collect()
}

/// A source's history of promotions, for escalation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offense {
    /// Promotions so far (within `forget_after` of each other).
    pub count: u32,
    /// Wall-clock seconds of the last promotion.
    pub last_unix_s: u64,
}

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
        (Duration::from_secs_f64(secs), entry.count)
    }

    /// Drops histories older than `forget_after`.
    pub fn prune(&mut self, now_unix_s: u64, b: &Blocking) {
        let keep = b.forget_after.0.as_secs();
        self.0
            .retain(|_, o| now_unix_s.saturating_sub(o.last_unix_s) <= keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{addr::source_key, policy::Dur};

    const S: u64 = 1_000_000_000;

    fn key(ip: &str) -> SourceKey {
        source_key(ip.parse().unwrap(), 64)
    }

    fn counters(first: u64, syn: u64, rst: u64) -> SourceCounters {
        SourceCounters {
            syn,
            rst,
            packets: syn + rst,
            first_seen_ns: first,
            ..Default::default()
        }
    }

    fn snap(at_ns: u64, entries: &[(&str, SourceCounters)]) -> Snapshot {
        Snapshot {
            at_ns,
            sources: entries.iter().map(|(ip, c)| (key(ip), *c)).collect(),
        }
    }

    #[test]
    fn rates_come_from_deltas() {
        let prev = counters(5, 100, 10);
        let cur = counters(5, 400, 10);
        let r = rates(Some(&prev), &cur, Duration::from_secs(2));
        assert_eq!(r[flag::SYN], 150.0);
        assert_eq!(r[flag::RST], 0.0);
        // A new source: everything it sent arrived in this interval.
        assert_eq!(rates(None, &cur, Duration::from_secs(1))[flag::SYN], 400.0);
        // Evicted and re-created (new first-seen): counts from zero.
        let reborn = counters(9, 30, 0);
        assert_eq!(
            rates(Some(&prev), &reborn, Duration::from_secs(1))[flag::SYN],
            30.0
        );
    }

    #[test]
    fn detects_the_class_most_over_its_threshold() {
        let t = [200, 20, 5000, 100, 100, 0];
        let prev = snap(
            10 * S,
            &[
                ("192.0.2.1", counters(1, 0, 0)),
                ("192.0.2.2", counters(1, 0, 0)),
            ],
        );
        let cur = snap(
            11 * S,
            &[
                ("192.0.2.1", counters(1, 300, 500)), // syn 1.5x, rst 5x
                ("192.0.2.2", counters(1, 150, 50)),  // under both
                ("192.0.2.3", counters(3, 201, 0)),   // new, just over
            ],
        );
        let d = detect(&prev, &cur, t);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].key, d[0].metric_name(), d[0].rate),
            (key("192.0.2.1"), "rst", 500.0)
        );
        assert_eq!(
            (d[1].key, d[1].metric_name(), d[1].threshold),
            (key("192.0.2.3"), "syn", 200)
        );
        // A threshold of 0 switches the check off.
        assert!(detect(&prev, &cur, [0, 20, 5000, 0, 100, 0]).is_empty());
        // Exactly at the threshold is not over it.
        let at = snap(11 * S, &[("192.0.2.4", counters(3, 200, 0))]);
        assert!(detect(&prev, &at, t).is_empty());
    }

    #[test]
    fn new_connections_are_a_metric_of_their_own() {
        let mut churn = counters(1, 300, 0);
        churn.new_conns = 290;
        let prev = snap(0, &[]);
        let cur = snap(S, &[("192.0.2.7", churn)]);
        let d = detect(&prev, &cur, [1000, 20, 5000, 100, 100, 50]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].metric_name(), d[0].rate, d[0].threshold),
            ("new_connections", 290.0, 50)
        );
        assert!(detect(&prev, &cur, [1000, 20, 5000, 100, 100, 0]).is_empty());
    }

    #[test]
    fn allowlisted_and_already_blocked_sources_are_never_promoted() {
        let t = [10, 10, 10, 10, 10, 10];
        let prev = snap(0, &[]);
        let cur = snap(
            S,
            &[
                ("10.1.2.3", counters(1, 1_000_000, 0)),
                ("192.0.2.9", counters(1, 50, 0)),
                ("198.51.100.1", counters(1, 50, 0)),
            ],
        );
        let allow: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let blocked: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let p = promotable(
            detect(&prev, &cur, t),
            |k| crate::addr::source_net(k, 64),
            &allow,
            &blocked,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0.to_string(), "192.0.2.9/32");
    }

    #[test]
    fn repeat_offenders_escalate_up_to_the_cap_and_are_forgotten() {
        let b = Blocking {
            ttl: Dur::secs(600),
            escalation: 2.0,
            max_ttl: Dur::secs(3000),
            forget_after: Dur::secs(86_400),
        };
        let net: IpNet = "203.0.113.7/32".parse().unwrap();
        let other: IpNet = "203.0.113.8/32".parse().unwrap();
        let mut o = Offenders::default();
        let mut now = 1_000_000;
        let ttls: Vec<u64> = (0..4)
            .map(|_| {
                now += 700;
                o.promote(&net, now, &b).0.as_secs()
            })
            .collect();
        assert_eq!(ttls, [600, 1200, 2400, 3000]);
        assert_eq!(o.promote(&other, now, &b), (Duration::from_secs(600), 1));
        // Quiet for longer than forget_after: back to the base TTL.
        now += 86_401;
        assert_eq!(o.promote(&net, now, &b), (Duration::from_secs(600), 1));
        // Pruning drops stale histories only.
        o.prune(now + 86_000, &b);
        assert_eq!(o.0.len(), 1);
        o.prune(now + 86_402, &b);
        assert!(o.0.is_empty());
    }
}
