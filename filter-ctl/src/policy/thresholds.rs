//! Per-source thresholds and in-kernel rate limits.

use serde::{Deserialize, Serialize};

use crate::model::metric::{Metric, METRIC_COUNT};

/// Per-source rates (per second) above which a source is promoted. 0
/// disables a check. What a promotion does depends on whether the evidence
/// could be forged with a spoofed source address (see docs/detection.md):
/// `syn`, `syn_ack`, `ack`, `rst`, `fin`, `unparsed` and `closed_ports`
/// restrict that kind of packet from the source; `new_connections` and
/// `empty_connections` (completed handshakes prove the address) block it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// SYNs that did not complete a handshake.
    pub syn: u64,
    /// Stray SYN-ACKs (answering no connection of the host).
    pub syn_ack: u64,
    /// Stray ACKs (with or without payload).
    pub ack: u64,
    pub rst: u64,
    pub fin: u64,
    /// TCP fragments and packets the filter cannot classify.
    pub unparsed: u64,
    /// Completed handshakes per second (off by default: busy clients and
    /// NAT gateways open hundreds per second legitimately).
    pub new_connections: u64,
    /// Connections closed before the source sent any data, per second.
    pub empty_connections: u64,
    /// Distinct closed ports one source touches within about a second (a
    /// port scan; needs `ports:`).
    pub closed_ports: u64,
    /// Connections a source holds open without having sent any data for
    /// `connections.idle_after` (a count, not a rate).
    pub idle_connections: u64,
    /// Inbound connections a source holds open (a count; off by default).
    pub concurrent_connections: u64,
    /// Slow connections a source holds (see [`Connections`]; a count; off
    /// by default).
    pub slow_connections: u64,
}

impl Thresholds {
    fn slot(&mut self, m: Metric) -> &mut u64 {
        match m {
            Metric::Syn => &mut self.syn,
            Metric::SynAck => &mut self.syn_ack,
            Metric::Ack => &mut self.ack,
            Metric::Rst => &mut self.rst,
            Metric::Fin => &mut self.fin,
            Metric::Unparsed => &mut self.unparsed,
            Metric::NewConnections => &mut self.new_connections,
            Metric::EmptyConnections => &mut self.empty_connections,
            Metric::ClosedPorts => &mut self.closed_ports,
            Metric::IdleConnections => &mut self.idle_connections,
            Metric::ConcurrentConnections => &mut self.concurrent_connections,
            Metric::SlowConnections => &mut self.slow_connections,
        }
    }

    pub fn get(&self, m: Metric) -> u64 {
        let mut copy = *self;
        *copy.slot(m)
    }

    pub fn set(&mut self, m: Metric, value: u64) {
        *self.slot(m) = value;
    }

    /// The per-CPU counts in one window of `window` at which the data path
    /// reports a source (`Config::trigger`, by `filter_common::window`
    /// metric): a source over `threshold × window` in sum is over its share
    /// on at least one of `cpus` CPUs, so none is missed; the controller
    /// then judges the sum. 0 where the check is off.
    pub fn triggers(
        &self,
        window: std::time::Duration,
        cpus: u32,
    ) -> [u32; filter_common::window::METRICS] {
        let by_metric = self.by_metric();
        let mut out = [0u32; filter_common::window::METRICS];
        for (t, &threshold) in out.iter_mut().zip(&by_metric) {
            if threshold == 0 {
                continue;
            }
            // The smallest sum over the threshold, shared evenly at worst.
            let need = (threshold as f64 * window.as_secs_f64()).floor() as u64 + 1;
            *t = need.div_ceil(cpus.max(1) as u64).clamp(1, u32::MAX as u64) as u32;
        }
        out
    }

    /// Indexed like [`Metric::index`].
    pub fn by_metric(&self) -> [u64; METRIC_COUNT] {
        [
            self.syn,
            self.syn_ack,
            self.ack,
            self.rst,
            self.fin,
            self.unparsed,
            self.new_connections,
            self.empty_connections,
            self.closed_ports,
            self.idle_connections,
            self.concurrent_connections,
            self.slow_connections,
        ]
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            syn: 200,
            syn_ack: 20,
            ack: 5000,
            rst: 100,
            fin: 100,
            unparsed: 100,
            new_connections: 0,
            empty_connections: 50,
            closed_ports: 10,
            idle_connections: 100,
            concurrent_connections: 0,
            slow_connections: 0,
        }
    }
}

/// In-kernel token buckets per source and flag class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub syn: Limit,
    pub syn_ack: Limit,
    pub ack: Limit,
    pub rst: Limit,
    pub fin: Limit,
    pub unparsed: Limit,
}

impl RateLimits {
    /// Indexed like [`filter_common::flag`].
    pub(super) fn by_class(&self) -> [(&'static str, Limit); filter_common::flag::COUNT] {
        [
            ("syn", self.syn),
            ("syn_ack", self.syn_ack),
            ("ack", self.ack),
            ("rst", self.rst),
            ("fin", self.fin),
            ("unparsed", self.unparsed),
        ]
    }
}

impl Default for RateLimits {
    /// Twice the promotion thresholds, so detection still sees a flood's
    /// rate (counters count offered packets) while the kernel cuts it.
    fn default() -> Self {
        let l = |rate| Limit { rate, burst: rate };
        RateLimits {
            syn: l(400),
            syn_ack: l(40),
            ack: l(10_000),
            rst: l(200),
            fin: l(200),
            unparsed: l(200),
        }
    }
}

/// `rate` packets/s with bursts of `burst`; rate 0 disables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub rate: u32,
    pub burst: u32,
}
