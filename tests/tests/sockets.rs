//! Kernel tier with real sockets: the filter object run through
//! BPF_PROG_TEST_RUN inside a fresh network namespace that holds real TCP
//! and UDP sockets, so its socket look-ups answer from the kernel's own
//! tables. Crafted packets that match a connection must be counted as
//! in-connection and never limited; the same packets matching none are
//! stray; a SYN to a closed port is dropped when the policy says so.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use filter_common::{flag, port_mode, Config, RateLimit, Reason};
use filter_tests::{
    kernel::{Filter, DROP, PASS},
    netns::NetNs,
    packet::{Packet, ACK, FIN, PROTO_UDP, PSH, RST, SYN},
};

/// A namespace with an interface holding the test's addresses (no DAD for
/// IPv6, so they can be bound at once). It is one end of a veth pair whose
/// other end is in the namespace too, without addresses: what the host
/// sends to an address of the subnet that is not its own goes nowhere.
fn namespace() -> NetNs {
    let ns = NetNs::new("fsk");
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d1", "up"]);
    for a in ["10.9.0.1/24", "10.9.0.2/24"] {
        ns.ip(&["addr", "add", a, "dev", "d0"]);
    }
    for a in ["2001:db8:9::1/64", "2001:db8:9::2/64"] {
        ns.ip(&["addr", "add", a, "dev", "d0", "nodad"]);
    }
    ns.ip(&["link", "set", "d0", "up"]);
    ns
}

/// An established connection from `client` to a listener on `server`.
struct Connection {
    _listener: TcpListener,
    client: TcpStream,
    server: TcpStream,
}

impl Connection {
    fn open(server: &str, client: &str) -> Connection {
        let listener = TcpListener::bind(server).unwrap();
        let client_addr: SocketAddr = client.parse().unwrap();
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(client_addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        sock.bind(&client_addr.into()).unwrap();
        sock.connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        Connection {
            _listener: listener,
            client: sock.into(),
            server,
        }
    }

    /// A packet from the client to the server on this connection.
    fn packet(&self, flags: u8) -> Packet {
        let (c, s) = (
            self.client.local_addr().unwrap(),
            self.client.peer_addr().unwrap(),
        );
        Packet::tcp(&c.ip().to_string(), flags).with(|p| {
            p.dst = s.ip();
            p.sport = c.port();
            p.dport = s.port();
        })
    }
}

/// Tight limits on every class a socket can own, so that a single stray
/// packet past the burst is dropped and an in-connection one never is.
fn tight() -> Config {
    let mut limits = [RateLimit::default(); flag::COUNT];
    for i in [flag::SYN_ACK, flag::ACK, flag::RST, flag::FIN] {
        limits[i] = RateLimit { rate: 1, burst: 2 };
    }
    Config {
        track_min_packets: 1,
        limits,
        ..Config::default()
    }
}

fn stray_and_in_connection_packets_are_told_apart(server: &'static str, client: &'static str) {
    namespace().run(move || {
        filter_tests::pin_to_cpu(0);
        let conn = Connection::open(server, client);
        let src = conn.client.local_addr().unwrap().ip().to_string();
        let mut f = Filter::with_config(tight());

        // On the connection: bare ACKs, data, FIN and RST all belong to it.
        let owned = [
            conn.packet(ACK).build(),
            conn.packet(ACK | PSH).with(|p| p.payload = 1000).build(),
            conn.packet(ACK).with(|p| p.payload = 1).build(),
            conn.packet(FIN | ACK).build(),
            conn.packet(RST).build(),
        ];
        for _ in 0..20 {
            for frame in &owned {
                assert_eq!(f.run(frame), PASS, "in-connection packet dropped");
            }
        }
        let c = f.counters(&src).unwrap();
        assert_eq!(c.in_conn, 100, "{c:?}");
        assert_eq!((c.ack, c.rst, c.fin, c.syn_ack, c.limited), (0, 0, 0, 0, 0));

        // The same packets from another port: no socket owns them.
        let stray = |flags: u8| {
            conn.packet(flags)
                .with(|p| p.sport = p.sport.wrapping_add(1))
                .build()
        };
        for (flags, name) in [(ACK, "ack"), (RST, "rst"), (FIN | ACK, "fin")] {
            let verdicts: Vec<u32> = (0..5).map(|_| f.run(&stray(flags))).collect();
            // The burst (2) passes, the rest of a back-to-back flood is cut.
            assert_eq!(verdicts, [PASS, PASS, DROP, DROP, DROP], "stray {name}");
        }
        // A stray ACK to the listening port meets only the listener: stray.
        let to_listener = conn
            .packet(ACK)
            .with(|p| p.sport = p.sport.wrapping_add(2))
            .build();
        assert_eq!(f.run(&to_listener), DROP);
        // A SYN-ACK that answers nothing this host sent.
        f.run(&stray(SYN | ACK));
        let c = f.counters(&src).unwrap();
        assert_eq!(
            (c.ack, c.rst, c.fin, c.syn_ack, c.in_conn),
            (6, 5, 5, 1, 100),
            "{c:?}"
        );
        assert_eq!(c.limited, 10);
        assert_eq!(f.stat(Reason::RateLimited).packets, 10);

        // TIME-WAIT still belongs to the connection: close from the server
        // first, so the server's socket is the one left in TIME-WAIT.
        let late_ack = conn.packet(ACK).build();
        let Connection {
            _listener,
            mut client,
            server,
        } = conn;
        drop(server);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "server closed");
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        let before = f.counters(&src).unwrap().in_conn;
        assert_eq!(f.run(&late_ack), PASS);
        assert_eq!(f.counters(&src).unwrap().in_conn, before + 1);
    });
}

#[test]
fn ipv4_stray_and_in_connection_packets_are_told_apart() {
    stray_and_in_connection_packets_are_told_apart("10.9.0.1:7000", "10.9.0.2:0");
}

#[test]
fn ipv6_stray_and_in_connection_packets_are_told_apart() {
    stray_and_in_connection_packets_are_told_apart("[2001:db8:9::1]:7000", "[2001:db8:9::2]:0");
}

/// Sends a SYN from `src`, an address of the namespace's IPv6 /64 that is
/// not configured, to the listener through a raw socket, so the host's
/// stack creates a request socket (SYN-RECV). Its SYN-ACK leaves by the
/// veth and is never answered.
fn half_open(src: &str, sport: u16, dst: SocketAddr) {
    let syn = Packet::tcp(src, SYN).with(|p| {
        p.dst = dst.ip();
        p.sport = sport;
        p.dport = dst.port();
        p.seq = 1000;
    });
    let frame = syn.build();
    let segment = &frame[syn.l4_offset()..];
    let raw = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&raw);
    // The kernel fills in the TCP checksum (offset 16); the source may be
    // an address the host does not have.
    for (opt, value) in [(libc::IPV6_CHECKSUM, 16i32), (libc::IPV6_FREEBIND, 1)] {
        // SAFETY: setsockopt with an int option on our socket.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                opt,
                (&value as *const i32).cast(),
                4,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt {opt}: {}",
            std::io::Error::last_os_error()
        );
    }
    let from: SocketAddr = format!("[{src}]:0").parse().unwrap();
    raw.bind(&from.into()).unwrap();
    let to = SocketAddr::new(dst.ip(), 0);
    raw.send_to(segment, &to.into()).unwrap();
}

#[test]
fn handshakes_complete_on_request_sockets_and_empty_closes_are_counted() {
    namespace().run(|| {
        filter_tests::pin_to_cpu(0);
        let listener = TcpListener::bind("[2001:db8:9::1]:7001").unwrap();
        let dst = listener.local_addr().unwrap();
        // Sources are counted per /64: 2001:db8:9::3 (the half-open
        // handshakes) and ::2 (a real connection below) are one source.
        let src = "2001:db8:9::3";
        half_open(src, 5555, dst);
        half_open(src, 5556, dst);
        std::thread::sleep(Duration::from_millis(50));
        let mut f = Filter::new();
        let from = |sport: u16, flags: u8| {
            Packet::tcp(src, flags).with(|p| {
                p.dst = dst.ip();
                p.sport = sport;
                p.dport = dst.port();
            })
        };
        // The ACK that meets a request socket completes a handshake.
        assert_eq!(f.run(&from(5555, ACK).build()), PASS);
        let c = f.counters(src).unwrap();
        assert_eq!((c.new_conns, c.in_conn, c.ack, c.open_empty), (1, 1, 0, 1));
        // An ACK from a port with no request socket completes nothing.
        f.run(&from(5600, ACK).build());
        let c = f.counters(src).unwrap();
        assert_eq!((c.new_conns, c.ack), (1, 1));
        f.run(&from(5556, ACK).build());
        assert_eq!(f.counters(src).unwrap().open_empty, 2);

        // Data on an established connection: one handshake is no longer
        // empty. A close while another has not been followed by data counts
        // one empty connection; the next close, with none pending, none.
        let conn = Connection::open("[2001:db8:9::1]:7002", "[2001:db8:9::2]:0");
        f.run(&conn.packet(ACK | PSH).with(|p| p.payload = 10).build());
        assert_eq!(f.counters(src).unwrap().open_empty, 1);
        let fin = conn.packet(FIN | ACK).build();
        f.run(&fin);
        let c = f.counters(src).unwrap();
        assert_eq!((c.empty_conns, c.open_empty), (1, 0));
        f.run(&fin);
        assert_eq!(f.counters(src).unwrap().empty_conns, 1);
        drop(listener);
    });
}

#[test]
fn syns_to_closed_ports_are_dropped_and_scans_counted() {
    namespace().run(|| {
        filter_tests::pin_to_cpu(0);
        let _open = TcpListener::bind("10.9.0.1:7000").unwrap();
        let _udp = UdpSocket::bind("10.9.0.1:5353").unwrap();
        let syn = |dport: u16| {
            Packet::tcp("10.9.0.2", SYN)
                .with(|p| {
                    p.dst = "10.9.0.1".parse().unwrap();
                    p.dport = dport;
                })
                .build()
        };
        let udp = |dport: u16| {
            Packet::tcp("10.9.0.2", 0)
                .with(|p| {
                    p.dst = "10.9.0.1".parse().unwrap();
                    p.proto = PROTO_UDP;
                    p.dport = dport;
                })
                .build()
        };
        // No policy: every port is open to the filter.
        let mut f = Filter::new();
        assert_eq!(f.run(&syn(7999)), PASS);

        // auto: open means a socket is there.
        let mut f = Filter::with_config(Config {
            track_min_packets: 1,
            tcp_ports: port_mode::AUTO,
            udp_ports: port_mode::AUTO,
            scan_ports: 10,
            ..Config::default()
        });
        assert_eq!(f.run(&syn(7000)), PASS);
        assert_eq!(f.run(&syn(7999)), DROP);
        assert_eq!(f.run(&udp(5353)), PASS);
        assert_eq!(f.run(&udp(5354)), DROP);
        let c = f.counters("10.9.0.2").unwrap();
        assert_eq!((c.syn, c.closed_ports, c.scans), (1, 2, 0));
        assert_eq!(f.stat(Reason::ClosedPort).packets, 2);
        // A scan: more than scan_ports distinct closed ports in an epoch.
        for port in 20_000..20_500 {
            assert_eq!(f.run(&syn(port)), DROP);
        }
        let c = f.counters("10.9.0.2").unwrap();
        assert_eq!(c.closed_ports, 502);
        // Once per epoch (about 1 s): twice if the loop straddled one.
        assert!((1..=2).contains(&c.scans), "{c:?}");
        // Retrying one closed port is no scan.
        let mut g = Filter::with_config(Config {
            track_min_packets: 1,
            tcp_ports: port_mode::AUTO,
            scan_ports: 10,
            ..Config::default()
        });
        for _ in 0..100 {
            g.run(&syn(7999));
        }
        assert_eq!(g.counters("10.9.0.2").unwrap().scans, 0);

        // list: open means listed, whatever listens.
        let mut f = Filter::with_config(Config {
            track_min_packets: 1,
            tcp_ports: port_mode::LIST,
            udp_ports: port_mode::LIST,
            ..Config::default()
        });
        f.maps.set_ports(&[22, 7001], &[53]).unwrap();
        assert_eq!(f.run(&syn(7001)), PASS);
        assert_eq!(f.run(&syn(22)), PASS);
        assert_eq!(f.run(&syn(7000)), DROP, "open socket but not listed");
        assert_eq!(f.run(&udp(53)), PASS);
        assert_eq!(f.run(&udp(5353)), DROP);
        // Not a SYN: the port policy does not apply (the connection's own
        // packets, whatever port).
        let ack = Packet::tcp("10.9.0.2", ACK)
            .with(|p| {
                p.dst = "10.9.0.1".parse().unwrap();
                p.dport = 7000;
            })
            .build();
        assert_eq!(f.run(&ack), PASS);
    });
}

#[test]
fn a_restriction_drops_stray_packets_and_spares_connections() {
    namespace().run(|| {
        filter_tests::pin_to_cpu(0);
        let conn = Connection::open("10.9.0.1:7000", "10.9.0.2:0");
        let mut f = Filter::new();
        let ack = flag::bit(flag::ACK);
        let rst = flag::bit(flag::RST);
        f.restrict("10.9.0.2", None, ack | rst);
        let stray = |flags| {
            conn.packet(flags)
                .with(|p| p.sport = p.sport.wrapping_add(1))
                .build()
        };
        assert_eq!(f.run(&stray(ACK)), DROP);
        assert_eq!(f.run(&stray(RST)), DROP);
        assert_eq!(f.stat(Reason::Restricted).packets, 2);
        // Its connection goes on, and classes not restricted pass.
        assert_eq!(f.run(&conn.packet(ACK).build()), PASS);
        assert_eq!(f.run(&conn.packet(RST).build()), PASS);
        assert_eq!(f.run(&stray(FIN | ACK)), PASS);
        assert_eq!(f.run(&conn.packet(SYN).build()), PASS);
        // Untracked sources are held to a restriction too.
        let mut gated = Filter::with_config(Config {
            track_min_packets: 100,
            ..Config::default()
        });
        gated.restrict("10.9.0.2", None, flag::bit(flag::SYN));
        assert_eq!(gated.run(&conn.packet(SYN).build()), DROP);
        assert_eq!(gated.run(&conn.packet(ACK).build()), PASS);
        assert!(gated.counters("10.9.0.2").is_none());
        // A restriction never hides a block that covers it.
        f.block("10.9.0.0/24", None);
        assert_eq!(f.run(&conn.packet(ACK).build()), DROP);
        assert_eq!(f.stat(Reason::BlockedCidr).packets, 1);
        // The server side is left as it was.
        let mut s = conn.server;
        s.write_all(b"x").unwrap();
    });
}
