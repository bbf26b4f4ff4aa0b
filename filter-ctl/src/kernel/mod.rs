//! The only code that talks to the kernel: loading and attaching the
//! programs, pins, the maps, batched reads, BTF offsets, the socket tables.

pub mod batch;
pub mod btf;
pub mod conns;
pub mod events;
pub mod handover;
pub mod links;
pub mod loader;
pub mod maps;
pub mod sysctl;

/// CPUs the kernel may run on (what per-CPU maps hold a value for); 1 if
/// it cannot be read.
pub fn possible_cpus() -> u32 {
    static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| aya::util::nr_cpus().map(|n| n.get()).unwrap_or(1))
}
