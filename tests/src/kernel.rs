//! The real filter object, loaded privately (no pins) and run through
//! BPF_PROG_TEST_RUN on crafted frames, for the kernel-tier tests. The
//! program runs in the calling thread's network namespace: its socket
//! look-ups see that namespace's sockets.

use std::{net::IpAddr, time::Duration};

use aya::{
    programs::{TestRun, TestRunOptions},
    Ebpf,
};
use filter_common::{list_reason, Config, Reason, SourceCounters};
use filter_ctl::{
    kernel::loader,
    kernel::maps::{new_entry, ListKind, Maps, ReasonStats},
    model::addr::{parse_net, source_key},
};

use crate::require_root;

pub const PASS: u32 = 2; // XDP_PASS
pub const DROP: u32 = 1; // XDP_DROP
/// XDP_TX: sent back out of the interface it came in on.
pub const TX: u32 = 3;

pub struct Filter {
    pub ebpf: Ebpf,
    pub maps: Maps,
    pub config: Config,
}

impl Filter {
    /// A fresh, private instance (no pins) counting every source from its
    /// first packet.
    pub fn new() -> Filter {
        Self::with_config(Config {
            track_min_packets: 1,
            ..Config::default()
        })
    }

    pub fn with_config(config: Config) -> Filter {
        require_root();
        let mut ebpf = loader::load(None).expect("loading the filter object");
        let mut maps = Maps::from_ebpf(&mut ebpf).expect("taking the maps");
        maps.set_config(&config).expect("writing CONFIG");
        Filter { ebpf, maps, config }
    }

    pub fn run(&mut self, frame: &[u8]) -> u32 {
        let prog = loader::program(&mut self.ebpf).unwrap();
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("test_run on {} bytes: {e}", frame.len()))
        .return_value
    }

    /// Runs `frame` once and returns the verdict and the frame as the
    /// program left it (an XDP_TX answer, say).
    pub fn run_out(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = loader::program(&mut self.ebpf).unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test_run on {} bytes: {e}", frame.len()));
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// Runs `frame` `times` times back to back inside the kernel (one
    /// syscall, no gap for a clock to advance between runs but the
    /// program's own cost).
    pub fn run_repeat(&mut self, frame: &[u8], times: u32) {
        let prog = loader::program(&mut self.ebpf).unwrap();
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: times,
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("test_run x{times}: {e}"));
    }

    /// A `COUNTERS` slot summed over CPUs.
    pub fn counter(&self, slot: u32) -> u64 {
        self.maps.counter(slot).unwrap()
    }

    pub fn counters(&self, src: &str) -> Option<SourceCounters> {
        let addr: IpAddr = src.parse().unwrap();
        let key = source_key(addr, self.config.ipv6_prefix_len as u8);
        self.maps.source(&key).unwrap()
    }

    pub fn stat(&self, reason: Reason) -> ReasonStats {
        self.maps.stats().unwrap().swap_remove(reason as usize)
    }

    pub fn block(&mut self, net: &str, ttl: Option<Duration>) {
        self.restrict(net, ttl, 0);
    }

    /// A block-list entry with a scope (0 = a block, else a restriction).
    pub fn restrict(&mut self, net: &str, ttl: Option<Duration>, scope: u32) {
        let mut entry = new_entry(list_reason::ADMIN, ttl, "test");
        entry.scope = scope;
        self.maps
            .insert(ListKind::Block, parse_net(net).unwrap(), &entry)
            .unwrap();
    }

    pub fn allow(&mut self, net: &str) {
        let entry = new_entry(list_reason::ADMIN, None, "test");
        self.maps
            .insert(ListKind::Allow, parse_net(net).unwrap(), &entry)
            .unwrap();
    }
}

impl Default for Filter {
    fn default() -> Self {
        Self::new()
    }
}
