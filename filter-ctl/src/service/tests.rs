//! The service tier: the admin operations' logic (validation, audit, typed
//! errors, offline refusals) against an in-memory kernel, without root.
//! The kernel and netns tiers in tests/ prove the real maps.

use std::collections::BTreeMap;

use filter_common::{Config, ListEntry, SourceCounters, SourceKey, FAMILY_V4};
use ipnet::IpNet;
use serde_json::Value;

use crate::{
    error::{Error, Result as KResult},
    kernel::maps::{listed, ListKind, ListedEntry, ReasonStats},
    model::{clock, snapshot::Snapshot},
    service::{
        audit::AuditLog,
        core::{top, Core, Kernel},
        ops::{Caller, Done, ErrorKind, Op, OpError, Reply, SourceSort, TopBy},
    },
};

/// An in-memory kernel: the lists in a map of fixed capacity, one
/// snapshot, and switches for the failures a real kernel gives.
#[derive(Default)]
struct Fake {
    lists: BTreeMap<(ListKind, IpNet), ListEntry>,
    /// Entries each list holds at most (0 = unlimited).
    capacity: usize,
    /// Every syscall fails with EPERM.
    unprivileged: bool,
    snapshot: Snapshot,
    config: Config,
    verified: Vec<(SourceKey, u64)>,
}

fn errno(what: &str, code: i32) -> Error {
    Error::Io {
        what: "bpf",
        path: what.into(),
        error: std::io::Error::from_raw_os_error(code),
    }
}

impl Fake {
    fn check(&self) -> KResult<()> {
        match self.unprivileged {
            true => Err(errno("map", libc::EPERM)),
            false => Ok(()),
        }
    }
}

impl Kernel for Fake {
    fn entries(&self, list: ListKind) -> KResult<Vec<ListedEntry>> {
        self.check()?;
        let now = clock::monotonic_ns();
        Ok(self
            .lists
            .iter()
            .filter(|((l, _), _)| *l == list)
            .map(|((l, net), e)| listed(*net, *l, "cidr", *e, now))
            .collect())
    }
    fn insert(&mut self, list: ListKind, net: IpNet, entry: &ListEntry) -> KResult<()> {
        self.check()?;
        let held = self.lists.keys().filter(|(l, _)| *l == list).count();
        if self.capacity > 0 && held >= self.capacity && !self.lists.contains_key(&(list, net)) {
            return Err(errno("map", libc::E2BIG));
        }
        self.lists.insert((list, net), *entry);
        Ok(())
    }
    fn remove(&mut self, list: ListKind, net: IpNet) -> KResult<bool> {
        self.check()?;
        Ok(self.lists.remove(&(list, net)).is_some())
    }
    fn stats(&self) -> KResult<Vec<ReasonStats>> {
        self.check()?;
        Ok(Vec::new())
    }
    fn snapshot(&self) -> KResult<Snapshot> {
        self.check()?;
        Ok(self.snapshot.clone())
    }
    fn config(&self) -> KResult<Config> {
        Ok(self.config)
    }
    fn set_config(&mut self, cfg: &Config) -> KResult<()> {
        self.config = *cfg;
        Ok(())
    }
    fn attached(&self) -> Vec<String> {
        vec!["fake0".into()]
    }
    fn verified(&self) -> KResult<Vec<(SourceKey, u64)>> {
        self.check()?;
        Ok(self.verified.clone())
    }
}

struct Rig {
    core: Core<Fake>,
    dir: std::path::PathBuf,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir =
            std::env::temp_dir().join(format!("filter-service-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let core = Core {
            kernel: Fake {
                config: Config {
                    ipv6_prefix_len: 64,
                    ..Config::default()
                },
                ..Fake::default()
            },
            audit: AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        };
        Rig { core, dir }
    }

    fn apply(&mut self, op: Op) -> Result<Done, OpError> {
        self.core.apply(&Caller::Offline { uid: 0 }, op)
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn block(n: &str) -> Op {
    Op::Add {
        list: ListKind::Block,
        net: net(n),
        ttl_s: Some(60),
        reason: "ticket 7".into(),
    }
}

#[test]
fn block_then_unblock_is_applied_and_audited_with_the_caller() {
    let mut r = Rig::new("audit");
    let done = r.apply(block("198.51.100.0/24")).unwrap();
    assert_eq!(
        done,
        Done::Added {
            net: net("198.51.100.0/24"),
            ttl_s: Some(60)
        }
    );
    let Done::List { entries } = r
        .apply(Op::List {
            list: ListKind::Block,
        })
        .unwrap()
    else {
        panic!("not a list")
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].reason.as_str(), entries[0].note.as_str()),
        ("admin", "ticket 7")
    );
    r.apply(Op::Remove {
        list: ListKind::Block,
        net: net("198.51.100.0/24"),
    })
    .unwrap();
    assert!(r.core.kernel.lists.is_empty());
    let events = r.audit();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin_block", "admin_unblock"]);
    assert_eq!(events[0]["by"]["via"], "offline");
    assert_eq!(events[0]["ttl_s"], 60);
}

#[test]
fn removing_what_is_not_listed_is_not_listed_and_changes_nothing() {
    let mut r = Rig::new("notlisted");
    r.apply(block("203.0.113.7/32")).unwrap();
    let e = r
        .apply(Op::Remove {
            list: ListKind::Allow,
            net: net("203.0.113.7/32"),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotListed);
    assert_eq!(e.to_string(), "203.0.113.7/32 is not in the allow list");
    assert_eq!(r.core.kernel.lists.len(), 1);
    assert_eq!(r.audit().len(), 1, "a refused remove is not audited");
}

#[test]
fn a_network_with_host_bits_is_bad_input_and_changes_nothing() {
    let mut r = Rig::new("hostbits");
    let e = r.apply(block("10.0.0.5/8")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput);
    assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
    assert!(r.core.kernel.lists.is_empty());
    assert!(r.audit().is_empty());
}

#[test]
fn a_reason_with_control_characters_or_an_endless_ttl_is_bad_input() {
    let mut r = Rig::new("reason");
    for op in [
        Op::Add {
            list: ListKind::Allow,
            net: net("192.0.2.1/32"),
            ttl_s: None,
            reason: "two\nlines".into(),
        },
        Op::Add {
            list: ListKind::Block,
            net: net("192.0.2.1/32"),
            ttl_s: Some(u64::MAX),
            reason: String::new(),
        },
    ] {
        assert_eq!(r.apply(op).unwrap_err().kind, ErrorKind::BadInput);
    }
    assert!(r.core.kernel.lists.is_empty());
    assert!(r.audit().is_empty());
}

#[test]
fn a_full_map_is_full_by_errno_and_nothing_is_audited() {
    let mut r = Rig::new("full");
    r.core.kernel.capacity = 1;
    r.apply(block("192.0.2.1/32")).unwrap();
    let e = r.apply(block("192.0.2.2/32")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Full);
    assert_eq!(r.audit().len(), 1);
    // Replacing an existing entry still works.
    r.apply(block("192.0.2.1/32")).unwrap();
}

#[test]
fn missing_privileges_are_denied_by_errno_with_the_cause_kept() {
    let mut r = Rig::new("denied");
    r.core.kernel.unprivileged = true;
    let e = r.apply(block("192.0.2.1/32")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    let io = std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source())
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .expect("the io::Error is in the chain");
    assert_eq!(io.raw_os_error(), Some(libc::EPERM));
    // `{:#}` through anyhow prints each cause once.
    let text = format!("{:#}", anyhow::Error::new(e));
    assert_eq!(text.matches("Operation not permitted").count(), 1, "{text}");
}

#[test]
fn operations_of_the_controller_are_not_running_offline() {
    let mut r = Rig::new("offline");
    for op in [
        Op::Status,
        Op::Reload,
        Op::Thresholds,
        Op::SetThreshold {
            metric: crate::model::metric::Metric::Syn,
            value: Some(5),
        },
        Op::SetVerification {
            mode: Some(crate::policy::VerifyMode::Auto),
        },
    ] {
        let e = r.apply(op.clone()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotRunning, "{op:?}");
        assert!(e.to_string().contains("filter-ctl run"), "{e}");
    }
    assert!(r.audit().is_empty());
}

#[test]
fn a_block_lifts_the_restrictions_inside_it_and_says_so() {
    let mut r = Rig::new("lift");
    let mut restriction =
        crate::kernel::maps::new_entry(filter_common::list_reason::DETECTOR, None, "syn");
    restriction.scope = filter_common::flag::bit(filter_common::flag::SYN);
    let inside = net("2001:db8:1:2::/64");
    r.core
        .kernel
        .insert(ListKind::Block, inside, &restriction)
        .unwrap();
    r.core
        .kernel
        .insert(ListKind::Block, net("2001:db8:9::/64"), &restriction)
        .unwrap();
    r.apply(block("2001:db8:1::/48")).unwrap();
    let nets: Vec<IpNet> = r.core.kernel.lists.keys().map(|(_, n)| *n).collect();
    assert_eq!(nets, [net("2001:db8:1::/48"), net("2001:db8:9::/64")]);
    let events = r.audit();
    assert_eq!(events[0]["event"], "restriction_lifted");
    assert_eq!(events[0]["net"], "2001:db8:1:2::/64");
}

fn counters(packets: u64, syn: u64, first_seen_ns: u64) -> SourceCounters {
    SourceCounters {
        packets,
        syn,
        first_seen_ns,
        ..SourceCounters::default()
    }
}

fn v4(last: u8) -> SourceKey {
    SourceKey {
        family: FAMILY_V4,
        addr: [10, 0, 0, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
}

#[test]
fn sources_are_sorted_and_limited_by_the_service() {
    let mut r = Rig::new("sources");
    for (i, (pkts, syn)) in [(10, 900), (5000, 1), (70, 50)].into_iter().enumerate() {
        r.core
            .kernel
            .snapshot
            .sources
            .insert(v4(i as u8 + 1), counters(pkts, syn, 1));
    }
    let rows = |r: &mut Rig, sort, limit| match r.apply(Op::Sources { sort, limit }).unwrap() {
        Done::Sources { rows } => rows
            .into_iter()
            .map(|s| s.source.to_string())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rows(&mut r, SourceSort::Packets, 0),
        ["10.0.0.2/32", "10.0.0.3/32", "10.0.0.1/32"]
    );
    assert_eq!(rows(&mut r, SourceSort::Syn, 1), ["10.0.0.1/32"]);
}

#[test]
fn top_ranks_by_rate_and_a_restarted_source_counts_from_zero() {
    let mut prev = Snapshot {
        at_ns: 1_000_000_000,
        ..Snapshot::default()
    };
    let mut cur = Snapshot {
        at_ns: 3_000_000_000,
        ..Snapshot::default()
    };
    // .1 sent 2000 SYNs in 2 s; .2 has more in total but only 100 new.
    prev.sources.insert(v4(1), counters(0, 0, 7));
    cur.sources.insert(v4(1), counters(2000, 2000, 7));
    prev.sources.insert(v4(2), counters(10_000, 10_000, 7));
    cur.sources.insert(v4(2), counters(10_100, 10_100, 7));
    // .3 was evicted and came back (another first_seen): all of it is new.
    prev.sources.insert(v4(3), counters(50_000, 50_000, 7));
    cur.sources.insert(v4(3), counters(600, 600, 8));
    let report = top(&prev, &cur, 64, TopBy::Syn, 10);
    assert_eq!(report.window_ms, 2000);
    let got: Vec<(String, f64)> = report
        .rows
        .iter()
        .map(|r| (r.source.to_string(), r.syn))
        .collect();
    assert_eq!(
        got,
        [
            ("10.0.0.1/32".to_owned(), 1000.0),
            ("10.0.0.3/32".to_owned(), 300.0),
            ("10.0.0.2/32".to_owned(), 50.0)
        ]
    );
    assert_eq!(top(&prev, &cur, 64, TopBy::Syn, 1).rows.len(), 1);
}

#[test]
fn replies_cross_the_wire_with_kind_and_whole_text() {
    let mut r = Rig::new("wire");
    r.core.kernel.unprivileged = true;
    let e = r.apply(block("192.0.2.1/32")).unwrap_err();
    let text = e.text();
    let line = serde_json::to_string(&Reply::from(Err::<Done, _>(e))).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["err"]["kind"], "denied");
    let back: Result<Done, OpError> = serde_json::from_str::<Reply>(&line).unwrap().into();
    let back = back.unwrap_err();
    assert_eq!((back.kind, back.text()), (ErrorKind::Denied, text));

    let ok = Reply::from(Ok(Done::Removed {
        net: net("192.0.2.0/24"),
    }));
    let line = serde_json::to_string(&ok).unwrap();
    let back: Result<Done, OpError> = serde_json::from_str::<Reply>(&line).unwrap().into();
    assert_eq!(
        back.unwrap(),
        Done::Removed {
            net: net("192.0.2.0/24")
        }
    );
}

#[test]
fn verified_sources_are_listed_live_only_longest_first() {
    let mut r = Rig::new("verified");
    let now = clock::monotonic_ns();
    let s = 1_000_000_000;
    r.core.kernel.verified = vec![
        (v4(1), now + 60 * s),
        (v4(2), now - s),
        (v4(3), now + 3600 * s),
    ];
    let Done::Verified { rows } = r.apply(Op::Verified).unwrap() else {
        panic!("not verified rows")
    };
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| (r.source.to_string(), r.expires_in_s))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "10.0.0.3/32");
    assert!((3598..=3600).contains(&got[0].1));
    assert_eq!(got[1].0, "10.0.0.1/32");
}
