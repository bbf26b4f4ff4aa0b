//! TCP option parsing. The walk's state lives in a per-CPU map value
//! (`OPTIONS`), whose contents the verifier does not track: every step of
//! the walk then starts from the same state, so each is verified once
//! whatever options came before (a walk keeping its state on the stack
//! makes the verifier follow every combination of options and exceeds its
//! budget). `bpf_loop` would do the same with less code, but its callback
//! needs the object's BTF loaded in the kernel, which the Rust-made BTF of
//! this object is not. Shared by the filter's challenge program and the
//! handover program, each with its own map.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::cookie::{OptionWalk, TcpOptions};

#[map]
static OPTIONS: PerCpuArray<OptionWalk> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's walk, to copy the options into (`buf`) before [`run`].
#[inline(always)]
pub fn scratch() -> Option<*mut OptionWalk> {
    OPTIONS.get_ptr_mut(0)
}

/// The options in the first `len` bytes of the walk's `buf`.
#[inline(always)]
pub fn run(w: *mut OptionWalk, len: usize) -> TcpOptions {
    // SAFETY: this CPU's slot, from `scratch`; nothing else runs on it
    // meanwhile.
    unsafe {
        (*w).start(len);
        (*w).walk();
        (*w).options()
    }
}
