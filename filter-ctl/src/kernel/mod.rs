//! The only code that talks to the kernel: loading and attaching the
//! programs, pins, the maps, batched reads, BTF offsets, the socket tables.

pub mod batch;
pub mod btf;
pub mod conns;
pub mod handover;
pub mod links;
pub mod loader;
pub mod maps;
pub mod sysctl;
