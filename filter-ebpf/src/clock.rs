//! `bpf_ktime_get_ns` read at most once per packet, and only if needed.

use aya_ebpf::helpers::bpf_ktime_get_ns;

pub struct Clock(u64);

impl Clock {
    #[inline(always)]
    pub fn new() -> Self {
        Clock(0)
    }

    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = unsafe { bpf_ktime_get_ns() };
        }
        self.0
    }
}
