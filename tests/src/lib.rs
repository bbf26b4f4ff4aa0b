//! Helpers for the filter's tests and benchmark: crafted packets, network
//! namespaces and a private bpf filesystem, each cleaned up on drop (also
//! when a test panics).

pub mod netns;
pub mod packet;

/// Kernel and netns tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN).
/// CI runs as root; elsewhere this fails loudly rather than skipping.
/// A fresh directory under the system's temp dir, removed when dropped
/// (also when the test fails).
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("filter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load BPF programs and create namespaces: run them as root (cargo xtask test does)"
    );
}

/// Pins the calling thread to one CPU (BPF_PROG_TEST_RUN runs the program
/// on the caller's CPU, and per-CPU state then stays on one copy).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}
/// The attack generator (`tests/ebpf/src/flood.rs`), built by `build.rs`.
pub static FLOOD_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flood"));
/// A bare `XDP_DROP` program, the benchmark's baseline.
pub static BARE_DROP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bare-drop"));

pub mod attack;
pub mod controller;
pub mod kernel;
pub mod rig;
pub mod sockets;
pub mod traffic;
