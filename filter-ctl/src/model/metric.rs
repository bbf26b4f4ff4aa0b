//! The names of what the detectors measure, shared by the policy (its
//! thresholds), the state (overrides), the CLI and the detectors.

use filter_common::flag;

/// What the detectors measure per source: the six packet classes (indexed
/// as [`flag`]), then connection signals and port scans.
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
pub const NEW_CONNECTIONS: usize = flag::COUNT;
pub const EMPTY_CONNECTIONS: usize = flag::COUNT + 1;
pub const CLOSED_PORTS: usize = flag::COUNT + 2;
/// Gauges from the kernel's socket tables (`kernel::conns`), not rates.
pub const IDLE_CONNECTIONS: usize = flag::COUNT + 3;
pub const CONCURRENT_CONNECTIONS: usize = flag::COUNT + 4;
pub const SLOW_CONNECTIONS: usize = flag::COUNT + 5;
