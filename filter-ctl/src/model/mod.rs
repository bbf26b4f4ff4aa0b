//! Plain values every floor shares: addresses and source keys, the clock,
//! metric names, counter snapshots. Imports nothing from the crate but
//! `error`.

pub mod addr;
pub mod clock;
pub mod metric;
pub mod snapshot;
