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
