//! The controller library: everything `filter-ctl` does, reusable by tests
//! and by `xtask`.

pub mod addr;
pub mod batch;
pub mod btf;
pub mod cli;
pub mod clock;
pub mod conns;
pub mod error;
pub mod loader;
pub mod maps;

/// The XDP object built by `build.rs`.
pub static FILTER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
/// The attack generator used by the test rig (not loaded by the filter).
pub static FLOOD_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flood"));
/// A bare `XDP_DROP` program, the benchmark baseline.
pub static BARE_DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bare-drop"));
pub mod audit;
pub mod control;
pub mod controller;
pub mod detect;
pub mod policy;
pub mod state;
