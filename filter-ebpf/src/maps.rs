//! Every map of the program. Capacities here are defaults: the loader may
//! resize them before load (`EbpfLoader::map_max_entries`).

use aya_ebpf::{
    macros::map,
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, ProgramArray, RingBuf,
    },
};
use filter_common::{
    capacity, cookie::Settings, counter, net_lens, Config, ListEntry, Sketch, SourceCounters,
    SourceKey, StatValue, PORT_WORDS, STATS_SLOTS,
};

/// Written by the controller, read on every packet (slot 0).
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Written here (one slot per verdict reason), read by the controller.
#[map]
pub static STATS: PerCpuArray<StatValue> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Written here for sources the sketch calls heavy, read by the controller.
#[map]
pub static SOURCES: LruPerCpuHashMap<SourceKey, SourceCounters> =
    LruPerCpuHashMap::with_max_entries(capacity::SOURCES, 0);

/// Written and read only here: where a new `SOURCES` value is built before
/// its insert (it is too large for the 512-byte BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<SourceCounters> = PerCpuArray::with_max_entries(1, 0);

/// Written by the controller (the policy's `ports:` lists), read here when
/// `Config::tcp_ports`/`udp_ports` is `port_mode::LIST`: one bit per port,
/// TCP in words 0..1024, UDP in 1024..2048.
#[map]
pub static PORTS: Array<u64> = Array::with_max_entries(PORT_WORDS, 0);

/// Written and read only here: one slot a value passes through so that the
/// verifier forgets how it was computed (`parse::forget`).
#[map]
pub static FORGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Written and read only here: the count-min sketch that gates `SOURCES`.
#[map]
pub static SKETCH: PerCpuArray<Sketch> = PerCpuArray::with_max_entries(1, 0);

/// Written here when a source passes a challenge (key → monotonic ns its
/// verification ends), read here on its SYNs; listed and swept by the
/// controller. Shared by all CPUs.
#[map]
pub static VERIFIED: LruHashMap<SourceKey, u64> =
    LruHashMap::with_max_entries(capacity::VERIFIED, 0);

/// Written and read here: the time of a source's first, dropped SYN.
#[map]
pub static PENDING: LruHashMap<SourceKey, u64> = LruHashMap::with_max_entries(capacity::PENDING, 0);

/// Written by the loader (slot 0: the `challenge` program), entered here by
/// tail call.
#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Written by the controller: the cookie keys, the route, what the
/// host's TCP accepts (`filter_common::cookie::Settings`). Shared with the
/// `handover` program through its pin.
#[map]
pub static SYNCOOKIE: Array<Settings> = Array::with_max_entries(1, 0);

/// Written here (`counter::*` slots), read by the controller.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);

/// Written here (sources crossing a detection trigger, `filter_common::Event`),
/// read by the controller.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(capacity::EVENTS_BYTES, 0);

/// Written by the controller, read here.
#[map]
pub static ALLOW_V4: LpmTrie<[u8; 4], ListEntry> = LpmTrie::with_max_entries(capacity::ALLOW, 0);
#[map]
pub static ALLOW_V6: LpmTrie<[u8; 16], ListEntry> = LpmTrie::with_max_entries(capacity::ALLOW, 0);
#[map]
pub static BLOCK_V4: HashMap<[u8; 4], ListEntry> =
    HashMap::with_max_entries(capacity::BLOCK_EXACT, 0);
#[map]
pub static BLOCK_V6: HashMap<[u8; 16], ListEntry> =
    HashMap::with_max_entries(capacity::BLOCK_EXACT, 0);
/// CIDR blocks: hash maps keyed by (prefix length, masked address),
/// probed for each length `NET_LENS` says is present, longest first.
#[map]
pub static BLOCK_NET_V4: HashMap<Key<[u8; 4]>, ListEntry> =
    HashMap::with_max_entries(capacity::BLOCK_NET, 0);
#[map]
pub static BLOCK_NET_V6: HashMap<Key<[u8; 16]>, ListEntry> =
    HashMap::with_max_entries(capacity::BLOCK_NET, 0);
/// The same entries as tries, asked when more prefix lengths are in use
/// than the probes cover (`filter_common::net_lens::OVERFLOW`).
#[map]
pub static BLOCK_TRIE_V4: LpmTrie<[u8; 4], ListEntry> =
    LpmTrie::with_max_entries(capacity::BLOCK_NET, 0);
#[map]
pub static BLOCK_TRIE_V6: LpmTrie<[u8; 16], ListEntry> =
    LpmTrie::with_max_entries(capacity::BLOCK_NET, 0);
/// Written and read only here: where a CIDR look-up builds its key
/// (a (length, address) key of up to 20 bytes).
#[map]
pub static NET_KEY: PerCpuArray<[u64; 3]> = PerCpuArray::with_max_entries(1, 0);

/// Written by the controller (and by any writer of the CIDR maps), read
/// here: the prefix lengths present (`filter_common::net_lens`).
#[map]
pub static NET_LENS: Array<u64> = Array::with_max_entries(net_lens::SLOTS, 0);
