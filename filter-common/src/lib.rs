//! Types shared by the XDP program (`filter-ebpf`) and the controller
//! (`filter-ctl`): map keys and values, verdict reasons, map names and default
//! capacities. Every struct is `#[repr(C)]` with explicit padding and no
//! `bool`/`Option`, so both sides agree on the layout byte for byte.
#![no_std]

pub mod cookie;

/// A map of the program, as the kernel and the pin directory know it: the
/// name of its `#[map]` static (the kernel keeps 15 characters) and its key
/// and value sizes. The catalogue below is the one place these are written:
/// the loader checks pins against it, and a kernel-tier test checks it
/// against the compiled object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    pub name: &'static str,
    pub key_size: u32,
    pub value_size: u32,
}

impl MapDef {
    const fn new<K, V>(name: &'static str) -> MapDef {
        MapDef {
            name,
            key_size: core::mem::size_of::<K>() as u32,
            value_size: core::mem::size_of::<V>() as u32,
        }
    }

    /// An LPM trie: its key is a 4-byte prefix length, then the address.
    const fn lpm<K, V>(name: &'static str) -> MapDef {
        MapDef {
            name,
            key_size: 4 + core::mem::size_of::<K>() as u32,
            value_size: core::mem::size_of::<V>() as u32,
        }
    }
}

/// The map catalogue: every map the filter program owns.
pub mod maps {
    use super::*;

    /// `Array<Config>`, one slot: run-time knobs of the data path.
    pub const CONFIG: MapDef = MapDef::new::<u32, Config>("CONFIG");
    /// `PerCpuArray<StatValue>` indexed by [`Reason`].
    pub const STATS: MapDef = MapDef::new::<u32, StatValue>("STATS");
    /// `LruPerCpuHashMap<SourceKey, SourceCounters>`: tracked sources.
    pub const SOURCES: MapDef = MapDef::new::<SourceKey, SourceCounters>("SOURCES");
    /// `PerCpuArray<Sketch>`, one slot: count-min sketch gating `SOURCES`.
    pub const SKETCH: MapDef = MapDef::new::<u32, Sketch>("SKETCH");
    /// `PerCpuArray<SourceCounters>`, one slot: staging for new entries.
    pub const SCRATCH: MapDef = MapDef::new::<u32, SourceCounters>("SCRATCH");
    /// `PerCpuArray<u64>`, one slot the data path passes values through to
    /// keep verification bounded.
    pub const FORGET: MapDef = MapDef::new::<u32, u64>("FORGET");
    /// `Array<u64>`: bitmaps of the host's open ports, read when the policy
    /// lists them (see [`port_mode`]).
    pub const PORTS: MapDef = MapDef::new::<u32, u64>("PORTS");
    /// Verified sources: key → CLOCK_MONOTONIC ns the verification ends.
    pub const VERIFIED: MapDef = MapDef::new::<SourceKey, u64>("VERIFIED");
    /// Sources with a challenge pending: key → ns of their first SYN.
    pub const PENDING: MapDef = MapDef::new::<SourceKey, u64>("PENDING");
    /// Tail-call targets: slot 0, the `challenge` program.
    pub const JUMP: MapDef = MapDef::new::<u32, u32>("JUMP");
    /// Per-CPU counters the controller reads ([`counter`]).
    pub const COUNTERS: MapDef = MapDef::new::<u32, u64>("COUNTERS");
    /// `Array<cookie::Settings>`, one slot: the cookie keys and the route.
    pub const SYNCOOKIE: MapDef = MapDef::new::<u32, cookie::Settings>("SYNCOOKIE");
    /// `RingBuf` of [`Event`]s: sources crossing a detection trigger.
    pub const EVENTS: MapDef = MapDef {
        name: "EVENTS",
        key_size: 0,
        value_size: 0,
    };
    /// `PerCpuArray<cookie::OptionWalk>`, one slot: the TCP option walk.
    pub const OPTIONS: MapDef = MapDef::new::<u32, cookie::OptionWalk>("OPTIONS");
    /// `LpmTrie<[u8; 4], ListEntry>`: IPv4 allowlist.
    pub const ALLOW_V4: MapDef = MapDef::lpm::<[u8; 4], ListEntry>("ALLOW_V4");
    /// `LpmTrie<[u8; 16], ListEntry>`: IPv6 allowlist.
    pub const ALLOW_V6: MapDef = MapDef::lpm::<[u8; 16], ListEntry>("ALLOW_V6");
    /// `HashMap<[u8; 4], ListEntry>`: exact IPv4 blocks (/32).
    pub const BLOCK_V4: MapDef = MapDef::new::<[u8; 4], ListEntry>("BLOCK_V4");
    /// `HashMap<[u8; 16], ListEntry>`: exact IPv6 blocks (/128).
    pub const BLOCK_V6: MapDef = MapDef::new::<[u8; 16], ListEntry>("BLOCK_V6");
    /// `HashMap<(prefix length, [u8; 4]), ListEntry>`: IPv4 CIDR blocks,
    /// keyed like an LPM trie (length, then the masked address) and probed
    /// once per prefix length present ([`NET_LENS`]), longest first.
    pub const BLOCK_NET_V4: MapDef = MapDef::lpm::<[u8; 4], ListEntry>("BLOCK_NET_V4");
    /// The same for IPv6 CIDR blocks (including /64 sources).
    pub const BLOCK_NET_V6: MapDef = MapDef::lpm::<[u8; 16], ListEntry>("BLOCK_NET_V6");
    /// `LpmTrie<[u8; 4], ListEntry>`: the same IPv4 CIDR blocks, asked
    /// when more prefix lengths are in use than the hash probes cover.
    pub const BLOCK_TRIE_V4: MapDef = MapDef::lpm::<[u8; 4], ListEntry>("BLOCK_TRIE_V4");
    pub const BLOCK_TRIE_V6: MapDef = MapDef::lpm::<[u8; 16], ListEntry>("BLOCK_TRIE_V6");
    /// `Array<u64>`, [`net_lens::SLOTS`] slots: which prefix lengths the
    /// CIDR block maps hold (a bit per length; see [`net_lens`]).
    pub const NET_LENS: MapDef = MapDef::new::<u32, u64>("NET_LENS");
    /// `PerCpuArray<[u64; 3]>`, one slot: where the data path builds a
    /// CIDR look-up's key.
    pub const NET_KEY: MapDef = MapDef::new::<u32, [u64; 3]>("NET_KEY");

    /// Every map the program owns, in a stable order (pinning, inspection).
    pub const ALL: [MapDef; 24] = [
        CONFIG,
        STATS,
        SOURCES,
        SKETCH,
        SCRATCH,
        FORGET,
        PORTS,
        VERIFIED,
        PENDING,
        COUNTERS,
        EVENTS,
        JUMP,
        SYNCOOKIE,
        OPTIONS,
        ALLOW_V4,
        ALLOW_V6,
        BLOCK_V4,
        BLOCK_V6,
        BLOCK_NET_V4,
        BLOCK_NET_V6,
        BLOCK_TRIE_V4,
        BLOCK_TRIE_V6,
        NET_LENS,
        NET_KEY,
    ];
}

/// Name of the XDP program inside the object.
pub const PROGRAM_NAME: &str = "filter";
/// The program the filter enters by tail call to answer a SYN with a
/// cookie SYN-ACK (slot 0 of `JUMP`).
pub const CHALLENGE_PROGRAM: &str = "challenge";
/// The TC ingress program of the transparent cookie route, in its own
/// object (it calls a kfunc: a kernel without it must still load the
/// filter).
pub const HANDOVER_PROGRAM: &str = "handover";

/// Default capacities. The loader can override them at load time.
pub mod capacity {
    /// Tracked sources (LRU: idle entries are evicted, inserts never fail).
    pub const SOURCES: u32 = 65_536;
    /// Entries in each allowlist trie.
    pub const ALLOW: u32 = 4_096;
    /// Exact blocks per family.
    pub const BLOCK_EXACT: u32 = 262_144;
    /// CIDR blocks per family.
    pub const BLOCK_NET: u32 = 65_536;
    /// Verified sources (LRU; only sources that passed a challenge get in,
    /// so a spoofed flood cannot evict them).
    pub const VERIFIED: u32 = 65_536;
    /// Pending challenges (LRU: a large spoofed flood churns it).
    pub const PENDING: u32 = 262_144;
    /// Bytes of the `EVENTS` ring (a power of two): 1 MiB holds about
    /// 26 000 events (32 bytes and an 8-byte header each) between two
    /// reads by the controller, which reads as they arrive.
    pub const EVENTS_BYTES: u32 = 1 << 20;
}

/// Slots of the `NET_LENS` map: bit `i` of a length slot says the CIDR
/// block map of that family holds an entry of prefix length `base + i`;
/// [`net_lens::FLAGS`] says which other list maps hold anything. Set by
/// whoever adds an entry; recomputed from the live entries by the
/// controller every interval (a removal may leave a bit set until then,
/// which costs one look-up that misses, never a wrong verdict).
pub mod net_lens {
    /// IPv4 lengths 0 to 31 (/32s are in the exact map).
    pub const V4: u32 = 0;
    /// IPv6 lengths 0 to 63, then 64 to 127 (/128s are in the exact map).
    pub const V6_LOW: u32 = 1;
    pub const V6_HIGH: u32 = 2;
    /// Flags: families with more lengths in one slot than the data path
    /// probes ([`MAX_PROBED`]; it then asks that family's trie instead),
    /// and which of the allow and exact-block maps hold anything (an empty
    /// one is not looked up at all).
    pub const FLAGS: u32 = 3;
    pub const OVERFLOW_V4: u64 = 1;
    pub const OVERFLOW_V6: u64 = 2;
    pub const ALLOW_V4: u64 = 4;
    pub const ALLOW_V6: u64 = 8;
    pub const EXACT_V4: u64 = 16;
    pub const EXACT_V6: u64 = 32;
    pub const SLOTS: u32 = 4;
    /// Lengths the data path probes per slot, longest first (each probe is
    /// one hash look-up; the verifier walks every one).
    pub const MAX_PROBED: usize = 8;
}

/// Slots of the `COUNTERS` map.
pub mod counter {
    /// SYNs (without ACK) that reached the verification step: the offered
    /// SYN load the controller's `auto` mode watches.
    pub const SYNS: u32 = 0;
    /// ACKs of our own cookies the TC program handed to a listener
    /// (`bpf_sk_assign_tcp_reqsk` succeeded), and those it could not
    /// (the kfunc refused: a route failing at run time).
    pub const HANDED_OVER: u32 = 1;
    pub const HANDOVER_FAILED: u32 = 2;
    /// Reports the ring buffer had no room for (one per source, metric and
    /// window, however many packets retry it): the controller then judges
    /// every source once (a full scan) instead of the reported ones.
    pub const EVENTS_LOST: u32 = 3;
    /// Entries added to `SOURCES` (the map is full, and recycling its
    /// least recently used entries, once this passes its capacity).
    pub const SOURCES_ADDED: u32 = 4;
    /// Packets of tracked sources counted in each class (the metrics'
    /// per-flag rates): `CLASSES + flag::*`.
    pub const CLASSES: u32 = 8;
    /// Slots in the map.
    pub const SLOTS: u32 = 16;
}

/// Words of the `PORTS` map: 65 536 bits for TCP, then as many for UDP.
pub const PORT_WORDS: u32 = 2 * 1024;
/// First word of the UDP bitmap in `PORTS`.
pub const PORT_WORDS_UDP: u32 = 1024;

/// How the data path decides whether a destination port is open
/// ([`Config::tcp_ports`], [`Config::udp_ports`]).
pub mod port_mode {
    /// No closed-port policy: every port is treated as open.
    pub const OFF: u32 = 0;
    /// Open = the host has a socket for it (the kernel's socket look-up).
    pub const AUTO: u32 = 1;
    /// Open = its bit is set in the `PORTS` bitmap.
    pub const LIST: u32 = 2;
}

/// Slots in the stats array. More than [`Reason::COUNT`] so that later
/// reasons fit a map pinned by an older build.
pub const STATS_SLOTS: u32 = 16;

/// Why a packet got its verdict; the index of its slot in `STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// IP packet from a non-listed source: counted, passed.
    Passed = 0,
    /// Source matched the allowlist: passed without further checks.
    Allowlisted = 1,
    /// Source matched an exact (/32 or /128) block: dropped.
    BlockedExact = 2,
    /// Source matched a CIDR block: dropped.
    BlockedCidr = 3,
    /// A header was truncated or inconsistent: passed, never misparsed.
    Malformed = 4,
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed.
    NonIp = 5,
    /// IP but not TCP (UDP, ICMP, ...): counted per source, passed.
    NonTcp = 6,
    /// IP fragment that carries no TCP header (offset > 0): passed.
    Fragment = 7,
    /// Over the source's in-kernel token bucket for its flag class: dropped.
    RateLimited = 8,
    /// A SYN (or UDP datagram) to a port the policy says is closed: dropped.
    ClosedPort = 9,
    /// A packet of a class the source is restricted on (a stray packet, or
    /// a SYN), from a restriction the controller promoted: dropped. The
    /// source's in-connection traffic still passes.
    Restricted = 10,
    /// A SYN from a source not yet verified, while verification is on: the
    /// first SYN of `first_syn_drop`, remembered and dropped (the
    /// challenge). Its retransmission verifies the source.
    Unverified = 11,
    /// A retransmitted SYN inside the window: the source is now verified;
    /// passed.
    Verified = 12,
    /// A SYN from a source with a challenge pending, outside the window
    /// (too soon: a flood repeating itself; or too late): dropped, and the
    /// challenge starts over.
    ChallengeFailed = 13,
    /// A SYN from an unverified source answered with a cookie SYN-ACK by
    /// the filter itself (XDP_TX); it never reaches the listener.
    ChallengeSent = 14,
}

impl Reason {
    /// Number of reasons in use.
    pub const COUNT: usize = 15;
    /// Every reason, in slot order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::Passed,
        Reason::Allowlisted,
        Reason::BlockedExact,
        Reason::BlockedCidr,
        Reason::Malformed,
        Reason::NonIp,
        Reason::NonTcp,
        Reason::Fragment,
        Reason::RateLimited,
        Reason::ClosedPort,
        Reason::Restricted,
        Reason::Unverified,
        Reason::Verified,
        Reason::ChallengeFailed,
        Reason::ChallengeSent,
    ];

    /// Stable name used in CLI output, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Passed => "passed",
            Reason::Allowlisted => "allowlisted",
            Reason::BlockedExact => "blocked_exact",
            Reason::BlockedCidr => "blocked_cidr",
            Reason::Malformed => "malformed",
            Reason::NonIp => "non_ip",
            Reason::NonTcp => "non_tcp",
            Reason::Fragment => "fragment",
            Reason::RateLimited => "rate_limited",
            Reason::ClosedPort => "closed_port",
            Reason::Restricted => "restricted",
            Reason::Unverified => "unverified",
            Reason::Verified => "verified",
            Reason::ChallengeFailed => "challenge_failed",
            Reason::ChallengeSent => "challenge_sent",
        }
    }

    /// Whether packets with this reason are dropped.
    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::BlockedExact
                | Reason::BlockedCidr
                | Reason::RateLimited
                | Reason::ClosedPort
                | Reason::Restricted
                | Reason::Unverified
                | Reason::ChallengeFailed
        )
    }
}

/// Packets and bytes for one verdict reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatValue {
    pub packets: u64,
    pub bytes: u64,
}

/// Address family tags used in [`SourceKey::family`].
pub const FAMILY_V4: u32 = 4;
pub const FAMILY_V6: u32 = 6;

/// Identity of a source: an IPv4 address, or an IPv6 address masked to the
/// configured prefix (default /64). IPv4 uses the first 4 bytes of `addr`,
/// the rest stays zero. Addresses are in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub family: u32,
    pub addr: [u8; 16],
}

/// Packet classes, in the order of [`SourceCounters`]' counters, of
/// [`Config::limits`] and of the bits of [`ListEntry::scope`]. A packet
/// belongs to at most one class. Every class but SYN counts only *stray*
/// packets: those that match no local socket (the kernel's socket look-up).
pub mod flag {
    /// SYN without ACK, to an open port.
    pub const SYN: usize = 0;
    /// SYN with ACK, matching no local socket.
    pub const SYN_ACK: usize = 1;
    /// No SYN, FIN or RST (ACK with or without payload), matching no socket.
    pub const ACK: usize = 2;
    /// RST set, matching no socket.
    pub const RST: usize = 3;
    /// FIN set (RST not), matching no socket.
    pub const FIN: usize = 4;
    /// TCP the filter cannot classify: IPv4/IPv6 fragments of TCP (a tiny
    /// first fragment, or a later one), extension chains longer than the
    /// parser walks.
    pub const UNPARSED: usize = 5;
    pub const COUNT: usize = 6;
    /// Names, indexed by class.
    pub const NAMES: [&str; COUNT] = ["syn", "syn_ack", "ack", "rst", "fin", "unparsed"];

    /// The [`super::ListEntry::scope`] bit of class `i`.
    pub const fn bit(i: usize) -> u32 {
        1 << i
    }
}

/// A token bucket's state: milli-tokens and when it was last refilled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub tokens_milli: u64,
    pub last_ns: u64,
}

/// An in-kernel rate limit for one flag class: `rate` packets per second
/// with bursts of `burst` packets. `rate` 0 disables it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub rate: u32,
    pub burst: u32,
}

/// Highest rate the kernel accepts (keeps the refill arithmetic in u64).
pub const MAX_RATE_PPS: u32 = 10_000_000;

/// Most distinct closed ports the per-source scan bitmap tells apart
/// ([`SourceCounters::scan_bits`] has 128 bits; collisions make the count
/// saturate well before).
pub const MAX_SCAN_PORTS: u32 = 64;

/// Per-source counters, one copy per CPU (summed in userspace). Timestamps
/// are `bpf_ktime_get_ns` (CLOCK_MONOTONIC) nanoseconds. Class counters
/// count what the source sent (offered load), including packets the rate
/// limit then dropped, so the controller sees the real rate; every class but
/// `syn` counts stray packets only (see [`flag`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// SYN without ACK, to an open port.
    pub syn: u64,
    /// Stray SYN-ACKs.
    pub syn_ack: u64,
    /// Stray ACKs (no SYN, FIN or RST; with or without payload).
    pub ack: u64,
    /// Stray RSTs.
    pub rst: u64,
    /// Stray FINs.
    pub fin: u64,
    /// TCP packets that could not be classified (see [`flag::UNPARSED`]).
    pub unparsed: u64,
    /// Every IP packet from the source that reached counting.
    pub packets: u64,
    /// Frame bytes of those packets.
    pub bytes: u64,
    /// When this CPU first counted the source (0: never).
    pub first_seen_ns: u64,
    /// When this CPU last counted the source.
    pub last_seen_ns: u64,
    /// Packets this CPU dropped for the source's rate limits.
    pub limited: u64,
    /// Handshakes completed: an ACK that met the host's request socket (or
    /// carried a valid kernel syncookie).
    pub new_conns: u64,
    /// Packets that belong to a local connection (never limited, never a
    /// reason to promote).
    pub in_conn: u64,
    /// Connections closed (FIN or RST) before the source sent any data on
    /// them, as the kernel's socket counters tell.
    pub empty_conns: u64,
    /// SYNs and UDP datagrams to closed ports (dropped).
    pub closed_ports: u64,
    /// Epochs (about 1 s) in which this CPU saw the source touch more
    /// distinct closed ports than [`Config::scan_ports`].
    pub scans: u64,
    /// Distinct closed ports of the current epoch, hashed into 128 bits.
    pub scan_bits: [u64; 2],
    /// Epoch `scan_bits` belongs to.
    pub scan_epoch: u32,
    /// Bits set in `scan_bits`.
    pub scan_count: u32,
    /// Detection window `win` counts (`ktime / Config::window_ns`).
    pub win_id: u32,
    /// Bits (by [`window`] metric) of the events already sent for this
    /// window from this CPU; 16 bits up, those the ring had no room for.
    pub win_sent: u32,
    /// This CPU's counts in window `win_id`, by [`window`] metric.
    pub win: [u32; window::METRICS],
    /// Its counts in the window before (`win_id - 1`; zero if this CPU did
    /// not count the source then).
    pub prev_win: [u32; window::METRICS],
    /// This CPU's token buckets, one per class (see [`flag`]).
    pub buckets: [Bucket; flag::COUNT],
}

/// Detection in the kernel: each tracked source's counts per window (the
/// controller's interval), checked against the thresholds as they grow. A
/// count reaching its trigger sends one [`Event`] per window and CPU; the
/// controller then sums the source's CPUs and judges it exactly.
pub mod window {
    /// Metrics counted per window, in the controller's metric order: the
    /// six classes of [`super::flag`] (SYN net of completed handshakes),
    /// then completed handshakes and empty connections.
    pub const METRICS: usize = 8;
    pub const NEW_CONNS: usize = 6;
    pub const EMPTY_CONNS: usize = 7;
    /// [`super::Event::metric`] of a port scan (counted per epoch by the
    /// kernel against [`super::Config::scan_ports`]; reported at once).
    pub const SCAN: u32 = 8;
}

/// A source that crossed a detection trigger, pushed to `EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub key: SourceKey,
    /// A [`window`] metric, or [`window::SCAN`].
    pub metric: u32,
    /// This CPU's count when it crossed (for a scan: distinct closed ports).
    pub count: u32,
    /// The window (`ktime / Config::window_ns`).
    pub window: u32,
}

/// An allowlist or blocklist entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// CLOCK_MONOTONIC ns after which the entry no longer matches; 0 = never.
    /// Enforced by the XDP program itself.
    pub expires_ns: u64,
    /// Wall-clock seconds since the Unix epoch when the entry was added.
    pub added_unix_s: u64,
    /// Who or what added it: one of [`list_reason`].
    pub reason: u16,
    /// The entry's own prefix length, written by userspace with the entry
    /// (0 for entries from builds before it, and for /0). When a prefix
    /// entry has expired, the kernel looks again below this length, so an
    /// expired narrow entry never hides a live wider one.
    pub prefix_len: u8,
    pub _pad: u8,
    /// What the entry drops: 0 = all traffic of the source (a block);
    /// otherwise a restriction, with one bit per class ([`flag::bit`]): the
    /// source's SYNs (for `syn`) or its stray packets of those classes are
    /// dropped, its connections and other traffic pass. Written by the
    /// controller for evidence a spoofed source could have produced.
    pub scope: u32,
    /// Free text from the operator (UTF-8, NUL padded, truncated).
    pub note: [u8; LIST_NOTE_LEN],
}

/// Length of [`ListEntry::note`].
pub const LIST_NOTE_LEN: usize = 48;

impl Default for ListEntry {
    fn default() -> Self {
        ListEntry {
            expires_ns: 0,
            added_unix_s: 0,
            reason: list_reason::ADMIN,
            prefix_len: 0,
            _pad: 0,
            scope: 0,
            note: [0; LIST_NOTE_LEN],
        }
    }
}

/// Values of [`ListEntry::reason`].
pub mod list_reason {
    /// Added by an operator from the CLI.
    pub const ADMIN: u16 = 1;
    /// Listed in the policy file.
    pub const POLICY: u16 = 2;
    /// Promoted by the controller's detectors.
    pub const DETECTOR: u16 = 3;

    /// Stable name for output.
    pub const fn name(code: u16) -> &'static str {
        match code {
            ADMIN => "admin",
            POLICY => "policy",
            DETECTOR => "detector",
            _ => "unknown",
        }
    }
}

/// Run-time knobs of the data path, in slot 0 of `CONFIG`. The controller
/// writes it; the program reads it on every packet. An all-zero config (a
/// freshly created map) must behave sanely: see [`Config::effective_prefix`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// IPv6 source identity prefix length, 1..=128 (0 means the default 64).
    pub ipv6_prefix_len: u32,
    /// Packets a source must show in one sketch epoch (about 1 s) on one CPU
    /// before it gets an exact `SOURCES` entry. 0 or 1: track every source at
    /// once (exact counts, but a spoofed flood then churns the LRU).
    pub track_min_packets: u32,
    /// Per-source rate limits by class (see [`flag`]); enforced per CPU on
    /// tracked sources, on stray packets only (and on every SYN).
    pub limits: [RateLimit; flag::COUNT],
    /// Closed-port policy for TCP SYNs and for UDP ([`port_mode`]).
    pub tcp_ports: u32,
    pub udp_ports: u32,
    /// A tracked source touching more distinct closed ports than this in
    /// one epoch on one CPU counts a scan ([`SourceCounters::scans`]);
    /// 0 = no scan counting.
    pub scan_ports: u32,
    /// Source verification ([`verify_mode`]): the mechanism, and whether
    /// it is on now (the controller's `auto` turns it on and off).
    pub verify_mode: u32,
    pub verify_active: u32,
    /// `first_syn_drop`: a retransmitted SYN verifies its source when it
    /// comes this long after the first, in ms (too soon is a flood
    /// repeating itself, too late a new attempt).
    pub retry_min_ms: u32,
    pub retry_max_ms: u32,
    /// How long a verified source stays verified, in s.
    pub verified_ttl_s: u32,
    /// Length of a detection window in ns (the controller's interval); 0:
    /// no windows are counted and no events sent.
    pub window_ns: u64,
    /// Per-CPU count in one window at which a source is reported for a
    /// [`window`] metric (0: that check is off). The controller derives it
    /// from the threshold and the CPU count, so that a source over a
    /// threshold in sum is over its trigger on at least one CPU.
    pub trigger: [u32; window::METRICS],
}

/// Values of [`Config::verify_mode`].
pub mod verify_mode {
    pub const OFF: u32 = 0;
    /// Drop a source's first SYN; its retransmission verifies it.
    pub const FIRST_SYN_DROP: u32 = 1;
    /// Answer a SYN with a cookie SYN-ACK from XDP; the ACK verifies it.
    pub const SYN_COOKIE: u32 = 2;
}

/// Default IPv6 source prefix.
pub const DEFAULT_IPV6_PREFIX: u32 = 64;
/// Default tracking gate (see [`Config::track_min_packets`]).
pub const DEFAULT_TRACK_MIN_PACKETS: u32 = 4;

impl Default for Config {
    fn default() -> Self {
        Config {
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX,
            track_min_packets: DEFAULT_TRACK_MIN_PACKETS,
            limits: [RateLimit::default(); flag::COUNT],
            tcp_ports: port_mode::OFF,
            udp_ports: port_mode::OFF,
            scan_ports: 0,
            verify_mode: verify_mode::OFF,
            verify_active: 0,
            retry_min_ms: 0,
            retry_max_ms: 0,
            verified_ttl_s: 0,
            window_ns: 0,
            trigger: [0; window::METRICS],
        }
    }
}

/// Count-min sketch geometry: `SKETCH_ROWS` independent hashes of
/// `SKETCH_COLS` counters each. A per-CPU array value is limited to 32 KiB.
/// `SKETCH_COLS` must be a power of two (indices are masked, and the mean is
/// a shift by `SKETCH_COLS_LOG2`).
pub const SKETCH_ROWS: usize = 2;
pub const SKETCH_COLS: usize = 2048;
pub const SKETCH_COLS_LOG2: u32 = 11;
/// A counter is `epoch << SKETCH_EPOCH_SHIFT | count`: a counter from an older
/// epoch reads as zero, so the sketch resets itself without a sweep.
pub const SKETCH_EPOCH_SHIFT: u32 = 24;
pub const SKETCH_COUNT_MASK: u32 = (1 << SKETCH_EPOCH_SHIFT) - 1;
/// `ktime >> SKETCH_EPOCH_NS_SHIFT` is the epoch: 2^30 ns, about 1.07 s.
pub const SKETCH_EPOCH_NS_SHIFT: u32 = 30;

/// The sketch, one per CPU. `total` gives the mean counter load, which the
/// gate uses to tell a heavy source from the noise of a spoofed flood.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sketch {
    /// Epoch `total` belongs to.
    pub epoch: u32,
    /// Packets this CPU put into the sketch during `epoch`.
    pub total: u32,
    pub slots: [u32; SKETCH_ROWS * SKETCH_COLS],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are #[repr(C)] structs of integers with no implicit padding.
    unsafe impl aya::Pod for StatValue {}
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for SourceCounters {}
    unsafe impl aya::Pod for ListEntry {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Sketch {}
    unsafe impl aya::Pod for Bucket {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for RateLimit {}
    unsafe impl aya::Pod for cookie::Settings {}
    unsafe impl aya::Pod for cookie::OptionWalk {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SourceKey>(), 20);
        assert_eq!(
            size_of::<SourceCounters>(),
            18 * 8 + 16 + 2 * window::METRICS * 4 + flag::COUNT * 16
        );
        assert_eq!(size_of::<Event>(), 32);
        assert_eq!(size_of::<ListEntry>(), 8 + 8 + 4 + 4 + LIST_NOTE_LEN);
        assert_eq!(
            size_of::<Config>(),
            8 + flag::COUNT * 8 + 32 + 8 + window::METRICS * 4
        );
        assert_eq!(size_of::<StatValue>(), 16);
        assert!(size_of::<Sketch>() <= 32 * 1024);
        assert_eq!(1 << SKETCH_COLS_LOG2, SKETCH_COLS);
    }

    #[test]
    fn reasons_match_their_slots() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
        assert!(Reason::COUNT as u32 <= STATS_SLOTS);
    }
}

/// SipHash-1-3 of a 16-byte message (two little-endian words), keyed by
/// `k`: the sketch gate's hash. With a key chosen at random per load, a
/// sender cannot compute addresses that land on the counters of another.
#[inline(always)]
pub fn siphash13_16(k: [u64; 2], m: [u64; 2]) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    // The two words, then the final block: the length (16) in the top byte.
    for w in [m[0], m[1], 16u64 << 56] {
        v[3] ^= w;
        round(&mut v);
        v[0] ^= w;
    }
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod sip_tests {
    use core::hash::Hasher as _;

    use super::*;

    #[test]
    fn siphash13_matches_the_reference_implementation() {
        let keys = [
            [0, 0],
            [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908],
            [u64::MAX, 42],
        ];
        let messages = [[0u8; 16], *b"0123456789abcdef", [0xff; 16], {
            let mut m = [0u8; 16];
            m[..4].copy_from_slice(&[192, 0, 2, 1]);
            m
        }];
        for k in keys {
            for m in messages {
                let mut reference = siphasher::sip::SipHasher13::new_with_keys(k[0], k[1]);
                reference.write(&m);
                let words = [
                    u64::from_le_bytes(m[..8].try_into().unwrap()),
                    u64::from_le_bytes(m[8..].try_into().unwrap()),
                ];
                assert_eq!(siphash13_16(k, words), reference.finish(), "{k:?} {m:?}");
            }
        }
    }
}
