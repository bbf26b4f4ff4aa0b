//! The controller library: everything `filter-ctl` does, reusable by tests
//! and by `xtask`. Folders are floors; a module imports only from its own
//! floor or those below (checked by `tests/layers.rs`):
//!
//! `model` (and `error`) → `policy` → `kernel` → `detect` → `service` → `api` → `cli`

pub mod api;
pub mod cli;
pub mod detect;
pub mod error;
pub mod kernel;
pub mod model;
pub mod policy;
pub mod service;

/// The XDP object built by `build.rs`.
pub static FILTER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
/// The TC object of the transparent cookie route (`kernel::handover`).
pub static HANDOVER_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/handover"));
