//! What the detectors measure, as a type: the policy's thresholds, the
//! state's overrides, the CLI (`set threshold NAME`, checked by clap before
//! anything is sent) and the detectors all name a metric by this enum.

use filter_common::flag;
use serde::{Deserialize, Serialize};

/// A detection metric. The first six are the data path's packet classes
/// (in [`flag`] order), then connection signals and port scans.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// SYNs that did not complete a handshake.
    Syn,
    /// Stray SYN-ACKs.
    #[value(name = "syn_ack", alias = "syn-ack")]
    SynAck,
    /// Stray ACKs.
    Ack,
    /// Stray RSTs.
    Rst,
    /// Stray FINs.
    Fin,
    /// TCP the filter cannot classify.
    Unparsed,
    /// Completed handshakes.
    #[value(name = "new_connections", alias = "new-connections")]
    NewConnections,
    /// Connections closed before any data.
    #[value(name = "empty_connections", alias = "empty-connections")]
    EmptyConnections,
    /// Distinct closed ports (a scan).
    #[value(name = "closed_ports", alias = "closed-ports")]
    ClosedPorts,
    /// Connections held with no data.
    #[value(name = "idle_connections", alias = "idle-connections")]
    IdleConnections,
    /// Inbound connections held.
    #[value(name = "concurrent_connections", alias = "concurrent-connections")]
    ConcurrentConnections,
    /// Connections trickled into.
    #[value(name = "slow_connections", alias = "slow-connections")]
    SlowConnections,
}

impl Metric {
    /// Every metric, in index order.
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::Syn,
        Metric::SynAck,
        Metric::Ack,
        Metric::Rst,
        Metric::Fin,
        Metric::Unparsed,
        Metric::NewConnections,
        Metric::EmptyConnections,
        Metric::ClosedPorts,
        Metric::IdleConnections,
        Metric::ConcurrentConnections,
        Metric::SlowConnections,
    ];

    /// Its index in per-metric arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Its name in the policy, the CLI, JSON and the audit log.
    pub const fn name(self) -> &'static str {
        METRICS[self.index()]
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Metric names, indexed like [`Metric::index`].
pub const METRICS: [&str; METRIC_COUNT] = [
    "syn",
    "syn_ack",
    "ack",
    "rst",
    "fin",
    "unparsed",
    "new_connections",
    "empty_connections",
    "closed_ports",
    "idle_connections",
    "concurrent_connections",
    "slow_connections",
];
pub const METRIC_COUNT: usize = flag::COUNT + 6;
pub const NEW_CONNECTIONS: usize = Metric::NewConnections.index();
pub const EMPTY_CONNECTIONS: usize = Metric::EmptyConnections.index();
pub const CLOSED_PORTS: usize = Metric::ClosedPorts.index();
/// Gauges from the kernel's socket tables (`kernel::conns`), not rates.
pub const IDLE_CONNECTIONS: usize = Metric::IdleConnections.index();
pub const CONCURRENT_CONNECTIONS: usize = Metric::ConcurrentConnections.index();
pub const SLOW_CONNECTIONS: usize = Metric::SlowConnections.index();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_indices_and_flags_agree() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            // serde and the table say the same name.
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                format!("\"{}\"", m.name())
            );
            // clap accepts the name and its dashed alias.
            let dashed = m.name().replace('_', "-");
            for n in [m.name(), dashed.as_str()] {
                assert_eq!(
                    <Metric as clap::ValueEnum>::from_str(n, false),
                    Ok(*m),
                    "{n}"
                );
            }
        }
        for (i, name) in flag::NAMES.iter().enumerate() {
            assert_eq!(
                METRICS[i], *name,
                "packet classes come first, in flag order"
            );
        }
        assert!(<Metric as clap::ValueEnum>::from_str("sny", false).is_err());
    }
}
