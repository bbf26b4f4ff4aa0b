//! Typed access to the filter's maps, either straight from a freshly loaded
//! object or reopened from their pins by a later CLI call.

use std::{net::IpAddr, path::Path};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use filter_common::{
    maps as catalog, Config, ListEntry, Reason, SourceCounters, SourceKey, StatValue, LIST_NOTE_LEN,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::addr::is_host,
    model::clock,
};

/// Which list an entry goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Allow,
    Block,
}

impl std::fmt::Display for ListKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListKind::Allow => "allow",
            ListKind::Block => "block",
        })
    }
}

/// One list entry as the CLI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    pub net: IpNet,
    pub list: ListKind,
    /// "exact" or "cidr" (the map that holds it).
    pub matches: String,
    pub reason: String,
    /// What it drops: `all` (a block) or the classes of a restriction.
    pub scope: String,
    pub note: String,
    pub added_unix_s: u64,
    /// Seconds left; None for a permanent entry.
    pub expires_in_s: Option<u64>,
    pub expired: bool,
    #[serde(skip)]
    pub raw: ListEntry,
}

/// Totals of one verdict reason over all CPUs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReasonStats {
    pub reason: String,
    pub drops: bool,
    pub packets: u64,
    pub bytes: u64,
}

pub struct Maps {
    config: Array<MapData, Config>,
    ports: Array<MapData, u64>,
    stats: PerCpuArray<MapData, StatValue>,
    counters: PerCpuArray<MapData, u64>,
    syncookie: Array<MapData, filter_common::cookie::Settings>,
    verified: HashMap<MapData, SourceKey, u64>,
    sources: PerCpuHashMap<MapData, SourceKey, SourceCounters>,
    allow_v4: LpmTrie<MapData, [u8; 4], ListEntry>,
    allow_v6: LpmTrie<MapData, [u8; 16], ListEntry>,
    block_v4: HashMap<MapData, [u8; 4], ListEntry>,
    block_v6: HashMap<MapData, [u8; 16], ListEntry>,
    block_net_v4: HashMap<MapData, Key<[u8; 4]>, ListEntry>,
    block_net_v6: HashMap<MapData, Key<[u8; 16]>, ListEntry>,
    block_trie_v4: LpmTrie<MapData, [u8; 4], ListEntry>,
    block_trie_v6: LpmTrie<MapData, [u8; 16], ListEntry>,
    net_lens: Array<MapData, u64>,
    /// Where the maps are pinned, when they were opened from their pins.
    pin_dir: Option<std::path::PathBuf>,
}

fn map_err(what: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> Error {
    let what = what.into();
    move |error| Error::Map {
        what,
        source: Box::new(error),
    }
}

impl Maps {
    /// Takes the maps out of a loaded object (the program keeps its own
    /// references, so it goes on using them).
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self> {
        Self::build(|name| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::Load(format!("object has no map {name}")))
        })
    }

    /// Reopens the maps pinned under `dir`.
    pub fn from_pins(dir: &Path) -> Result<Self> {
        crate::kernel::loader::check_bpffs(dir)?;
        let probe = dir.join(catalog::CONFIG.name);
        match std::fs::symlink_metadata(&probe) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAttached(dir.to_owned()))
            }
            Err(error) => {
                return Err(Error::Io {
                    what: "reading",
                    path: probe,
                    error,
                })
            }
        }
        let mut maps = Self::build(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .map_err(map_err(format!("opening pinned map {}", path.display())))?;
            Map::from_map_data(data).map_err(map_err(format!("reading map {}", path.display())))
        })?;
        maps.pin_dir = Some(dir.to_owned());
        Ok(maps)
    }

    /// How many entries the block maps hold at most: (exact, CIDR), each
    /// per address family (the sizes the maps were created with).
    pub fn block_capacity(&self) -> Result<(u32, u32)> {
        use aya::maps::IterableMap as _;
        let max = |m: &MapData, name: &str| {
            m.info()
                .map(|i| i.max_entries())
                .map_err(map_err(format!("reading {name}'s size")))
        };
        Ok((
            max(self.block_v4.map(), catalog::BLOCK_V4.name)?,
            max(self.block_net_v4.map(), catalog::BLOCK_NET_V4.name)?,
        ))
    }

    /// How many entries each allow map holds at most (per family).
    pub fn allow_capacity(&self) -> Result<u32> {
        use aya::maps::IterableMap as _;
        self.allow_v4
            .map()
            .info()
            .map(|i| i.max_entries())
            .map_err(map_err(format!(
                "reading {}'s size",
                catalog::ALLOW_V4.name
            )))
    }

    /// The `NET_LENS` slots (`filter_common::net_lens`), as written.
    pub fn net_lens(&self) -> Result<[u64; filter_common::net_lens::SLOTS as usize]> {
        let mut out = [0u64; filter_common::net_lens::SLOTS as usize];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = self
                .net_lens
                .get(&(slot as u32), 0)
                .map_err(map_err("reading NET_LENS"))?;
        }
        Ok(out)
    }

    /// Overwrites one `NET_LENS` slot: what the data path looks up until
    /// the controller's next sweep rewrites it. For experiments and the
    /// benchmark (forcing the trie, say); a wrong value hides entries.
    pub fn set_net_lens_slot(&mut self, slot: u32, bits: u64) -> Result<()> {
        self.net_lens
            .set(slot, &bits, 0)
            .map_err(map_err("writing NET_LENS"))
    }

    /// Where the maps are pinned (None for maps taken from an object).
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    fn build(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
        macro_rules! typed {
            ($name:expr) => {{
                let name = $name;
                get(name)?.try_into().map_err(map_err(format!(
                    "map {name} has an unexpected type or layout"
                )))?
            }};
        }
        Ok(Maps {
            config: typed!(catalog::CONFIG.name),
            ports: typed!(catalog::PORTS.name),
            stats: typed!(catalog::STATS.name),
            counters: typed!(catalog::COUNTERS.name),
            syncookie: typed!(catalog::SYNCOOKIE.name),
            verified: typed!(catalog::VERIFIED.name),
            sources: typed!(catalog::SOURCES.name),
            allow_v4: typed!(catalog::ALLOW_V4.name),
            allow_v6: typed!(catalog::ALLOW_V6.name),
            block_v4: typed!(catalog::BLOCK_V4.name),
            block_v6: typed!(catalog::BLOCK_V6.name),
            block_net_v4: typed!(catalog::BLOCK_NET_V4.name),
            block_net_v6: typed!(catalog::BLOCK_NET_V6.name),
            block_trie_v4: typed!(catalog::BLOCK_TRIE_V4.name),
            block_trie_v6: typed!(catalog::BLOCK_TRIE_V6.name),
            net_lens: typed!(catalog::NET_LENS.name),
            pin_dir: None,
        })
    }

    pub fn config(&self) -> Result<Config> {
        self.config.get(&0, 0).map_err(map_err("reading CONFIG"))
    }

    /// Writes the open-port bitmaps the data path reads in `port_mode::LIST`
    /// (ports absent from a list are closed).
    pub fn set_ports(&mut self, tcp: &[u16], udp: &[u16]) -> Result<()> {
        let mut words = vec![0u64; filter_common::PORT_WORDS as usize];
        for (base, ports) in [(0, tcp), (filter_common::PORT_WORDS_UDP as usize, udp)] {
            for &p in ports {
                words[base + (p as usize >> 6)] |= 1u64 << (p & 63);
            }
        }
        for (i, w) in words.iter().enumerate() {
            if self.ports.get(&(i as u32), 0).ok() != Some(*w) {
                self.ports
                    .set(i as u32, w, 0)
                    .map_err(map_err("writing PORTS"))?;
            }
        }
        Ok(())
    }

    pub fn set_config(&mut self, cfg: &Config) -> Result<()> {
        self.config
            .set(0, cfg, 0)
            .map_err(map_err("writing CONFIG"))
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, list: ListKind, net: IpNet, entry: &ListEntry) -> Result<()> {
        let what = || format!("adding {net} to the {list:?} list");
        // The kernel looks past an expired prefix entry by its length.
        let entry = &ListEntry {
            prefix_len: net.prefix_len(),
            ..*entry
        };
        match (list, net) {
            (ListKind::Allow, IpNet::V4(n)) => self.allow_v4.insert(
                &Key::new(n.prefix_len().into(), n.addr().octets()),
                entry,
                0,
            ),
            (ListKind::Allow, IpNet::V6(n)) => self.allow_v6.insert(
                &Key::new(n.prefix_len().into(), n.addr().octets()),
                entry,
                0,
            ),
            (ListKind::Block, IpNet::V4(n)) if is_host(&net) => {
                self.block_v4.insert(&n.addr().octets(), entry, 0)
            }
            (ListKind::Block, IpNet::V6(n)) if is_host(&net) => {
                self.block_v6.insert(&n.addr().octets(), entry, 0)
            }
            // Keyed by the network address: the data path masks the
            // source to each length marked and looks that up (or asks the
            // trie once more lengths are in use than it probes).
            (ListKind::Block, IpNet::V4(n)) => {
                let key = Key::new(n.prefix_len().into(), n.network().octets());
                self.block_trie_v4
                    .insert(&key, entry, 0)
                    .and_then(|()| self.block_net_v4.insert(&key, entry, 0))
            }
            (ListKind::Block, IpNet::V6(n)) => {
                let key = Key::new(n.prefix_len().into(), n.network().octets());
                self.block_trie_v6
                    .insert(&key, entry, 0)
                    .and_then(|()| self.block_net_v6.insert(&key, entry, 0))
            }
        }
        .and_then(|()| self.mark(list, &net))
        .map_err(map_err(what()))
    }

    /// The `NET_LENS` bits an entry of `list` for `net` needs: its slot and
    /// bit (a CIDR block's length, or a flag), and whether the slot is a
    /// length slot.
    fn index_bit(list: ListKind, net: &IpNet) -> (u32, u64, bool) {
        use filter_common::net_lens;
        let len = net.prefix_len() as u32;
        let v6 = matches!(net, IpNet::V6(_));
        match (list, v6) {
            (ListKind::Allow, false) => (net_lens::FLAGS, net_lens::ALLOW_V4, false),
            (ListKind::Allow, true) => (net_lens::FLAGS, net_lens::ALLOW_V6, false),
            (ListKind::Block, false) if is_host(net) => {
                (net_lens::FLAGS, net_lens::EXACT_V4, false)
            }
            (ListKind::Block, true) if is_host(net) => (net_lens::FLAGS, net_lens::EXACT_V6, false),
            (ListKind::Block, false) => (net_lens::V4, 1 << len.min(63), true),
            (ListKind::Block, true) if len < 64 => (net_lens::V6_LOW, 1 << len, true),
            (ListKind::Block, true) => (net_lens::V6_HIGH, 1 << (len - 64).min(63), true),
        }
    }

    fn overflow_bit(net: &IpNet) -> u64 {
        match net {
            IpNet::V4(_) => filter_common::net_lens::OVERFLOW_V4,
            IpNet::V6(_) => filter_common::net_lens::OVERFLOW_V6,
        }
    }

    /// Tells the data path an entry of `list` for `net` exists: its map is
    /// no longer empty, its CIDR length is in use (and, past the lengths
    /// the data path probes, to ask the trie).
    fn mark(
        &mut self,
        list: ListKind,
        net: &IpNet,
    ) -> std::result::Result<(), aya::maps::MapError> {
        use filter_common::net_lens;
        let (slot, bit, length) = Self::index_bit(list, net);
        let bits = self.net_lens.get(&slot, 0)?;
        if bits & bit != 0 {
            return Ok(());
        }
        let bits = bits | bit;
        if length && bits.count_ones() as usize > net_lens::MAX_PROBED {
            let flags = self.net_lens.get(&net_lens::FLAGS, 0)?;
            self.net_lens
                .set(net_lens::FLAGS, &(flags | Self::overflow_bit(net)), 0)?;
        }
        self.net_lens.set(slot, &bits, 0)
    }

    /// Rewrites `NET_LENS` from the live entries of both lists (`allow`,
    /// `block`, as the controller's sweep lists them): maps that emptied
    /// and lengths no entry uses any more stop costing the data path a
    /// look-up. Only changed slots are written.
    pub fn sync_list_index<'a>(
        &mut self,
        allow: impl Iterator<Item = &'a IpNet>,
        block: impl Iterator<Item = &'a IpNet>,
    ) -> Result<()> {
        use filter_common::net_lens;
        let mut want = [0u64; net_lens::SLOTS as usize];
        let all = allow
            .map(|n| (ListKind::Allow, n))
            .chain(block.map(|n| (ListKind::Block, n)));
        for (list, net) in all {
            let (slot, bit, length) = Self::index_bit(list, net);
            want[slot as usize] |= bit;
            if length && want[slot as usize].count_ones() as usize > net_lens::MAX_PROBED {
                want[net_lens::FLAGS as usize] |= Self::overflow_bit(net);
            }
        }
        for (slot, bits) in want.into_iter().enumerate() {
            let slot = slot as u32;
            let had = self
                .net_lens
                .get(&slot, 0)
                .map_err(map_err("reading NET_LENS"))?;
            if had != bits {
                self.net_lens
                    .set(slot, &bits, 0)
                    .map_err(map_err("writing NET_LENS"))?;
            }
        }
        Ok(())
    }

    /// Removes an entry; `Ok(false)` if it was not there.
    pub fn remove(&mut self, list: ListKind, net: IpNet) -> Result<bool> {
        let res = match (list, net) {
            (ListKind::Allow, IpNet::V4(n)) => self
                .allow_v4
                .remove(&Key::new(n.prefix_len().into(), n.addr().octets())),
            (ListKind::Allow, IpNet::V6(n)) => self
                .allow_v6
                .remove(&Key::new(n.prefix_len().into(), n.addr().octets())),
            (ListKind::Block, IpNet::V4(n)) if is_host(&net) => {
                self.block_v4.remove(&n.addr().octets())
            }
            (ListKind::Block, IpNet::V6(n)) if is_host(&net) => {
                self.block_v6.remove(&n.addr().octets())
            }
            (ListKind::Block, IpNet::V4(n)) => {
                let key = Key::new(n.prefix_len().into(), n.network().octets());
                let _ = self.block_trie_v4.remove(&key);
                self.block_net_v4.remove(&key)
            }
            (ListKind::Block, IpNet::V6(n)) => {
                let key = Key::new(n.prefix_len().into(), n.network().octets());
                let _ = self.block_trie_v6.remove(&key);
                self.block_net_v6.remove(&key)
            }
        };
        match res {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err(format!("removing {net} from the {list:?} list"))(e)),
        }
    }

    /// Every entry of one list, sorted by network, as the CLI shows it.
    pub fn entries(&self, list: ListKind) -> Result<Vec<ListedEntry>> {
        let now = clock::monotonic_ns();
        let mut out: Vec<ListedEntry> = self
            .raw_entries(list)?
            .into_iter()
            .map(|(net, raw)| {
                let matches = match list == ListKind::Block && is_host(&net) {
                    true => "exact",
                    false => "cidr",
                };
                listed(net, list, matches, raw, now)
            })
            .collect();
        out.sort_by_key(|e| e.net);
        Ok(out)
    }

    /// Every entry of one list as stored, unsorted: what the controller's
    /// sweep needs every cycle (no text made for 200 000 entries).
    pub fn raw_entries(&self, list: ListKind) -> Result<Vec<(IpNet, ListEntry)>> {
        let mut out = Vec::new();
        let err = || map_err(format!("reading the {list:?} list"));
        match list {
            ListKind::Allow => {
                for item in self.allow_v4.iter() {
                    let (k, v) = item.map_err(err())?;
                    out.push((net_v4(k.data(), k.prefix_len()), v));
                }
                for item in self.allow_v6.iter() {
                    let (k, v) = item.map_err(err())?;
                    out.push((net_v6(k.data(), k.prefix_len()), v));
                }
            }
            ListKind::Block => {
                // The exact maps can hold hundreds of thousands of entries:
                // read them in batches (one syscall per ~1000, not two per
                // entry), one at a time only where the kernel cannot.
                for (k, v) in exact_entries(&self.block_v4)? {
                    out.push((net_v4(k, 32), v));
                }
                for (k, v) in exact_entries(&self.block_v6)? {
                    out.push((net_v6(k, 128), v));
                }
                for item in self.block_net_v4.iter() {
                    let (k, v) = item.map_err(err())?;
                    out.push((net_v4(k.data(), k.prefix_len()), v));
                }
                for item in self.block_net_v6.iter() {
                    let (k, v) = item.map_err(err())?;
                    out.push((net_v6(k.data(), k.prefix_len()), v));
                }
            }
        }
        Ok(out)
    }

    /// A `COUNTERS` slot (`filter_common::counter`) summed over CPUs.
    pub fn counter(&self, slot: u32) -> Result<u64> {
        let per_cpu = self
            .counters
            .get(&slot, 0)
            .map_err(map_err("reading COUNTERS"))?;
        Ok(per_cpu.iter().sum())
    }

    /// The cookie keys and route (`SYNCOOKIE`).
    pub fn cookie_settings(&self) -> Result<filter_common::cookie::Settings> {
        self.syncookie
            .get(&0, 0)
            .map_err(map_err("reading SYNCOOKIE"))
    }

    pub fn set_cookie_settings(&mut self, s: &filter_common::cookie::Settings) -> Result<()> {
        self.syncookie
            .set(0, s, 0)
            .map_err(map_err("writing SYNCOOKIE"))
    }

    /// Verified sources with the monotonic ns their verification ends.
    pub fn verified(&self) -> Result<Vec<(SourceKey, u64)>> {
        self.verified
            .iter()
            .map(|item| item.map_err(map_err("reading VERIFIED")))
            .collect()
    }

    /// Ends a source's verification (`Ok(false)`: it was not verified).
    pub fn unverify(&mut self, key: &SourceKey) -> Result<bool> {
        match self.verified.remove(key) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err("removing from VERIFIED")(e)),
        }
    }

    /// Verdict totals summed over CPUs, one row per reason.
    pub fn stats(&self) -> Result<Vec<ReasonStats>> {
        Reason::ALL
            .iter()
            .map(|&reason| {
                let per_cpu = self
                    .stats
                    .get(&(reason as u32), 0)
                    .map_err(map_err("reading STATS"))?;
                Ok(ReasonStats {
                    reason: reason.name().to_owned(),
                    drops: reason.drops(),
                    packets: per_cpu.iter().map(|v| v.packets).sum(),
                    bytes: per_cpu.iter().map(|v| v.bytes).sum(),
                })
            })
            .collect()
    }

    /// Counters of one source, summed over CPUs.
    pub fn source(&self, key: &SourceKey) -> Result<Option<SourceCounters>> {
        match self.sources.get(key, 0) {
            Ok(per_cpu) => Ok(Some(sum_counters(per_cpu.iter()))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("reading SOURCES")(e)),
        }
    }

    /// One source's counters, one copy per possible CPU (what window
    /// detection sums per window).
    pub fn source_cpus(&self, key: &SourceKey) -> Result<Option<Vec<SourceCounters>>> {
        match self.sources.get(key, 0) {
            Ok(per_cpu) => Ok(Some(per_cpu.iter().copied().collect())),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("reading SOURCES")(e)),
        }
    }

    /// Calls `f` with every tracked source and its per-CPU counters, in
    /// batches where the kernel supports it (one at a time otherwise),
    /// holding one batch at a time: the full scan of a million sources
    /// costs time, not memory.
    pub fn for_each_source(&self, mut f: impl FnMut(SourceKey, &[SourceCounters])) -> Result<()> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        if let Ok(nr_cpus) = aya::util::nr_cpus() {
            let fd = self.sources.map().fd().as_fd();
            match crate::kernel::batch::for_each_percpu(fd, nr_cpus.get() as usize, &mut f) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(error) => {
                    return Err(Error::Io {
                        what: "batch-reading",
                        path: "SOURCES".into(),
                        error,
                    })
                }
            }
        }
        for item in self.sources.iter() {
            let (key, per_cpu) = item.map_err(map_err("reading SOURCES"))?;
            let values: Vec<SourceCounters> = per_cpu.iter().copied().collect();
            f(key, &values);
        }
        Ok(())
    }

    /// How many sources `SOURCES` holds at most.
    pub fn sources_capacity(&self) -> Result<u32> {
        use aya::maps::IterableMap as _;
        self.sources
            .map()
            .info()
            .map(|i| i.max_entries())
            .map_err(map_err("reading SOURCES's size"))
    }

    /// Every tracked source's counters, stamped with the monotonic clock:
    /// what the detectors and `top` compare between two readings.
    pub fn snapshot(&self) -> Result<crate::model::snapshot::Snapshot> {
        Ok(crate::model::snapshot::Snapshot {
            at_ns: clock::monotonic_ns(),
            sources: self.sources()?.into_iter().collect(),
        })
    }

    /// Every tracked source with its counters summed over CPUs: in batches
    /// where the kernel supports it, else one entry at a time.
    pub fn sources(&self) -> Result<Vec<(SourceKey, SourceCounters)>> {
        match self.sources_batched() {
            Some(Ok(all)) => Ok(all),
            Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => Err(Error::Io {
                what: "batch-reading",
                path: "SOURCES".into(),
                error: e,
            }),
            _ => self.sources_one_by_one(),
        }
    }

    /// The batch path alone: None if the CPU count is unknown.
    pub fn sources_batched(&self) -> Option<std::io::Result<Vec<(SourceKey, SourceCounters)>>> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        let nr_cpus = aya::util::nr_cpus().ok()?;
        let fd = self.sources.map().fd().as_fd();
        Some(
            crate::kernel::batch::lookup_percpu::<SourceKey, SourceCounters>(
                fd,
                nr_cpus.get() as usize,
            )
            .map(|all| {
                all.into_iter()
                    .map(|(k, per_cpu)| (k, sum_counters(per_cpu.iter())))
                    .collect()
            }),
        )
    }

    /// [`Maps::sources`] through aya's iterator: two system calls per entry.
    pub fn sources_one_by_one(&self) -> Result<Vec<(SourceKey, SourceCounters)>> {
        let mut out = Vec::new();
        for item in self.sources.iter() {
            let (key, per_cpu) = item.map_err(map_err("reading SOURCES"))?;
            out.push((key, sum_counters(per_cpu.iter())));
        }
        Ok(out)
    }
}

/// Adds per-CPU counters; first seen is the earliest CPU that saw it.
pub fn sum_counters<'a>(per_cpu: impl Iterator<Item = &'a SourceCounters>) -> SourceCounters {
    per_cpu.fold(SourceCounters::default(), |mut acc, c| {
        acc.syn += c.syn;
        acc.syn_ack += c.syn_ack;
        acc.ack += c.ack;
        acc.rst += c.rst;
        acc.fin += c.fin;
        acc.packets += c.packets;
        acc.bytes += c.bytes;
        acc.limited += c.limited;
        acc.unparsed += c.unparsed;
        acc.new_conns += c.new_conns;
        acc.in_conn += c.in_conn;
        acc.empty_conns += c.empty_conns;
        acc.closed_ports += c.closed_ports;
        acc.scans += c.scans;
        if c.first_seen_ns != 0 && (acc.first_seen_ns == 0 || c.first_seen_ns < acc.first_seen_ns) {
            acc.first_seen_ns = c.first_seen_ns;
        }
        acc.last_seen_ns = acc.last_seen_ns.max(c.last_seen_ns);
        acc
    })
}

fn net_v4(octets: [u8; 4], prefix: u32) -> IpNet {
    IpNet::new(IpAddr::from(octets), prefix as u8)
        .unwrap_or_else(|_| IpNet::from(IpAddr::from(octets)))
}

fn net_v6(octets: [u8; 16], prefix: u32) -> IpNet {
    IpNet::new(IpAddr::from(octets), prefix as u8)
        .unwrap_or_else(|_| IpNet::from(IpAddr::from(octets)))
}

pub fn listed(
    net: IpNet,
    list: ListKind,
    matches: &'static str,
    raw: ListEntry,
    now: u64,
) -> ListedEntry {
    let expired = raw.expires_ns != 0 && raw.expires_ns <= now;
    ListedEntry {
        net,
        list,
        matches: matches.to_owned(),
        reason: filter_common::list_reason::name(raw.reason).to_owned(),
        scope: scope_text(raw.scope),
        note: note_text(&raw.note),
        added_unix_s: raw.added_unix_s,
        expires_in_s: (raw.expires_ns != 0)
            .then(|| raw.expires_ns.saturating_sub(now) / 1_000_000_000),
        expired,
        raw,
    }
}

/// Every entry of an exact block map in batches; None where the kernel has
/// no batch look-up (EINVAL), so the caller walks the map instead.
/// Entries of an exact block map, key first.
type ExactEntries<const N: usize> = Vec<([u8; N], ListEntry)>;

/// Every entry of an exact block map: in batches (one syscall per ~1000
/// entries; these maps can hold hundreds of thousands), one at a time only
/// where the kernel has no batch look-up.
fn exact_entries<const N: usize>(
    map: &HashMap<MapData, [u8; N], ListEntry>,
) -> Result<ExactEntries<N>> {
    match exact_batched(map) {
        Some(all) => all,
        None => map
            .iter()
            .map(|item| item.map_err(map_err("reading the exact block list")))
            .collect(),
    }
}

fn exact_batched<const N: usize>(
    map: &HashMap<MapData, [u8; N], ListEntry>,
) -> Option<Result<ExactEntries<N>>> {
    use aya::maps::IterableMap as _;
    use std::os::fd::AsFd as _;
    const _: () = assert!(std::mem::size_of::<ListEntry>().is_multiple_of(8));
    // A plain hash map is a per-CPU one with a single copy of each value
    // (ListEntry's size is a multiple of 8: no padding between values).
    match crate::kernel::batch::lookup_percpu::<[u8; N], ListEntry>(map.map().fd().as_fd(), 1) {
        Ok(all) => Some(Ok(all
            .into_iter()
            .map(|(k, mut v)| (k, v.remove(0)))
            .collect())),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
        Err(error) => Some(Err(Error::Io {
            what: "batch-reading",
            path: "the exact block list".into(),
            error,
        })),
    }
}

/// Builds an entry stamped now.
pub fn new_entry(reason: u16, ttl: Option<std::time::Duration>, note: &str) -> ListEntry {
    let mut entry = ListEntry {
        expires_ns: clock::expiry_after(ttl),
        added_unix_s: clock::unix_now_s(),
        reason,
        ..ListEntry::default()
    };
    // Truncate on a character boundary so the note stays valid UTF-8.
    let mut end = note.len().min(LIST_NOTE_LEN);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    entry.note[..end].copy_from_slice(&note.as_bytes()[..end]);
    entry
}

/// `all` for a block, else the restricted classes (`syn,ack`).
pub fn scope_text(scope: u32) -> String {
    if scope == 0 {
        return "all".to_owned();
    }
    filter_common::flag::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| scope & filter_common::flag::bit(*i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn note_text(raw: &[u8; LIST_NOTE_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_truncate_on_char_boundaries() {
        let long = "é".repeat(40); // 80 bytes
        let e = new_entry(filter_common::list_reason::ADMIN, None, &long);
        let text = note_text(&e.note);
        assert_eq!(text, "é".repeat(LIST_NOTE_LEN / 2));
        assert_eq!(e.expires_ns, 0);
    }

    #[test]
    fn expiry_is_judged_against_the_given_clock() {
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        let mut raw = new_entry(filter_common::list_reason::DETECTOR, None, "x");
        raw.expires_ns = 10_000_000_000;
        let at = |now| listed(net, ListKind::Block, "cidr", raw, now);
        assert!(!at(9_000_000_000).expired);
        assert_eq!(at(7_500_000_000).expires_in_s, Some(2));
        assert!(at(10_000_000_000).expired);
        assert!(at(99_000_000_000).expired);
        assert_eq!(at(99_000_000_000).reason, "detector");
        raw.expires_ns = 0;
        let forever = listed(net, ListKind::Block, "cidr", raw, u64::MAX);
        assert!(!forever.expired && forever.expires_in_s.is_none());
    }

    #[test]
    fn per_cpu_counters_sum() {
        let a = SourceCounters {
            syn: 2,
            packets: 3,
            first_seen_ns: 50,
            last_seen_ns: 90,
            ..Default::default()
        };
        let b = SourceCounters {
            syn: 1,
            packets: 1,
            first_seen_ns: 40,
            last_seen_ns: 70,
            ..Default::default()
        };
        let idle = SourceCounters::default();
        let s = sum_counters([a, idle, b].iter());
        assert_eq!(
            (s.syn, s.packets, s.first_seen_ns, s.last_seen_ns),
            (3, 4, 40, 90)
        );
    }
}
