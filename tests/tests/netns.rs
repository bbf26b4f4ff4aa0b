//! End to end on real interfaces: the filter attached to the protected
//! side of a veth pair between two network namespaces, real TCP clients on
//! the other side. Run in native and in skb mode.

use std::{thread, time::Duration};

use filter_common::{list_reason, Config, Reason};
use filter_ctl::{
    kernel::loader,
    kernel::maps::{new_entry, ListKind, Maps},
    model::addr::parse_net,
    policy::AttachMode,
};
use filter_tests::{
    netns::{connect_from, BpfFs, Pair, Server},
    require_root,
};

const BLOCKED: &str = "10.199.0.2";
const LEGIT: &str = "10.199.0.3";

fn blocked_source_cannot_connect_while_another_can(mode: AttachMode) {
    require_root();
    let pair = Pair::new(&[BLOCKED, LEGIT]);
    let fs = BpfFs::new();
    let pin = fs.path("filter");
    let server = Server::start(&pair.server);

    // Without the filter both sources connect: the rig itself works.
    connect_from(&pair.client, BLOCKED, Duration::from_secs(2)).expect("rig: baseline connect");

    let (iface, pin2) = (pair.server_if.clone(), pin.clone());
    pair.server
        .run(move || {
            let caps = filter_ctl::policy::Capacities::default();
            loader::attach(&iface, mode, &pin2, &Config::default(), &caps)
        })
        .unwrap_or_else(|e| panic!("attach in {mode} mode: {e}"));

    // Block through the pinned maps, as `filter-ctl block` does.
    let mut maps = Maps::from_pins(&pin).unwrap();
    let entry = new_entry(list_reason::ADMIN, None, "netns test");
    maps.insert(ListKind::Block, parse_net(BLOCKED).unwrap(), &entry)
        .unwrap();

    let before = server.accepted_from(BLOCKED);
    let err = connect_from(&pair.client, BLOCKED, Duration::from_millis(1500))
        .expect_err("a blocked source must not complete a handshake");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    for i in 0..5 {
        connect_from(&pair.client, LEGIT, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("legit connect {i} in {mode} mode: {e}"));
    }
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        server.accepted_from(BLOCKED),
        before,
        "blocked SYN reached the socket"
    );
    assert_eq!(server.accepted_from(LEGIT), 5);

    let stats = maps.stats().unwrap();
    assert!(
        stats[Reason::BlockedExact as usize].packets >= 1,
        "{stats:?}"
    );
    assert!(stats[Reason::Passed as usize].packets >= 5, "{stats:?}");
    let legit = maps
        .source(&filter_ctl::model::addr::source_key(
            LEGIT.parse().unwrap(),
            64,
        ))
        .unwrap();
    // The legit client was counted once it passed the tracking gate; the
    // ACKs of its handshakes met the server's sockets: in-connection, and
    // none of them stray.
    assert!(
        legit.is_some_and(|c| c.syn >= 1 && c.new_conns >= 1 && c.in_conn >= 1 && c.ack == 0),
        "{legit:?}"
    );

    // Detach: the program is gone and the blocked source gets through again.
    loader::detach(&pair.server_if, &pin, true).unwrap();
    assert!(!pin.exists(), "purge left pins behind");
    connect_from(&pair.client, BLOCKED, Duration::from_secs(2)).expect("after detach");
}

#[test]
fn native_mode_blocked_source_cannot_connect_while_another_can() {
    blocked_source_cannot_connect_while_another_can(AttachMode::Native);
}

#[test]
fn skb_mode_blocked_source_cannot_connect_while_another_can() {
    blocked_source_cannot_connect_while_another_can(AttachMode::Skb);
}

/// The link pinned for the server's interface, as the kernel sees it.
fn link_state(pin: &std::path::Path, iface: &str) -> filter_ctl::kernel::links::LinkState {
    filter_ctl::kernel::links::pinned(&pin.join(format!("link_{iface}"))).unwrap()
}

#[test]
fn attach_keeps_a_running_config_upgrades_in_place_and_replaces_a_stale_link() {
    require_root();
    let pair = Pair::new(&[BLOCKED, LEGIT]);
    let fs = BpfFs::new();
    let pin = fs.path("filter");
    let _server = Server::start(&pair.server);
    let attach = |config: Config| {
        let (iface, pin) = (pair.server_if.clone(), pin.clone());
        pair.server
            .run(move || {
                let caps = filter_ctl::policy::Capacities::default();
                loader::attach(&iface, AttachMode::Native, &pin, &config, &caps)
            })
            .unwrap_or_else(|e| panic!("attach: {e}"))
    };
    let running = Config {
        ipv6_prefix_len: 48,
        track_min_packets: 7,
        ..Config::default()
    };
    assert_eq!(attach(running), loader::Attached::New);
    let mut maps = Maps::from_pins(&pin).unwrap();
    maps.insert(
        ListKind::Block,
        parse_net(BLOCKED).unwrap(),
        &new_entry(list_reason::ADMIN, None, "kept"),
    )
    .unwrap();

    // Attaching again (another `filter-ctl attach` with its defaults) must
    // not touch the running filter's configuration.
    assert_eq!(attach(Config::default()), loader::Attached::Already);
    let cfg = maps.config().unwrap();
    assert_eq!((cfg.ipv6_prefix_len, cfg.track_min_packets), (48, 7));

    // Another build's program on the link (here: a bare XDP_DROP, which
    // stops the legit client): attach swaps this build's program in, on
    // the same link, so the interface is never without a program.
    let before = link_state(&pin, &pair.server_if);
    let link_path = pin.join(format!("link_{}", pair.server_if));
    pair.server.run(move || {
        let mut other = aya::Ebpf::load(filter_tests::BARE_DROP_OBJECT).unwrap();
        let prog: &mut aya::programs::Xdp = other
            .program_mut("bare_drop")
            .expect("bare-drop program")
            .try_into()
            .unwrap();
        prog.load().unwrap();
        let link = aya::programs::links::PinnedLink::from_pin(&link_path).unwrap();
        let link = aya::programs::xdp::XdpLink::try_from(aya::programs::links::FdLink::from(link))
            .unwrap();
        prog.attach_to_link(link).unwrap();
    });
    assert!(
        connect_from(&pair.client, LEGIT, Duration::from_millis(800)).is_err(),
        "the bare drop did not take the link"
    );
    assert_ne!(link_state(&pin, &pair.server_if).prog_id, before.prog_id);
    assert_eq!(attach(Config::default()), loader::Attached::Upgraded);
    let after = link_state(&pin, &pair.server_if);
    assert_eq!(
        after.link_id, before.link_id,
        "the link was replaced, not updated"
    );
    connect_from(&pair.client, LEGIT, Duration::from_secs(2)).expect("legit after the upgrade");
    assert!(connect_from(&pair.client, BLOCKED, Duration::from_millis(800)).is_err());
    assert_eq!(attach(Config::default()), loader::Attached::Already);

    // The device is deleted and created again: the pinned link is defunct
    // (attached to nothing), and attach must notice and attach afresh.
    pair.recreate(&[BLOCKED, LEGIT]);
    let iface = pair.server_if.clone();
    let pin2 = pin.clone();
    assert!(!pair.server.run(move || loader::link_is_live(&pin2, &iface)));
    assert!(matches!(
        attach(Config::default()),
        loader::Attached::Reattached { .. }
    ));
    let iface = pair.server_if.clone();
    let pin2 = pin.clone();
    assert!(pair.server.run(move || loader::link_is_live(&pin2, &iface)));
    // The maps (and the block) survived; the config too.
    assert!(connect_from(&pair.client, BLOCKED, Duration::from_millis(800)).is_err());
    connect_from(&pair.client, LEGIT, Duration::from_secs(2)).expect("legit after re-attach");
    assert_eq!(maps.config().unwrap().ipv6_prefix_len, 48);
    let iface = pair.server_if.clone();
    pair.server
        .run(move || loader::detach(&iface, &pin, true))
        .unwrap();
}
