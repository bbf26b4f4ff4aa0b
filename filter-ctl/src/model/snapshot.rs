//! Counters of every tracked source at one instant: what the kernel floor
//! reads and the detectors judge.

use std::collections::HashMap;

use filter_common::{SourceCounters, SourceKey};

/// Counters of every tracked source at one instant (monotonic ns).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub at_ns: u64,
    pub sources: HashMap<SourceKey, SourceCounters>,
}
