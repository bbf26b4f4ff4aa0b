//! Kernel tier with real sockets: the filter object run through
//! BPF_PROG_TEST_RUN inside a fresh network namespace that holds real TCP
//! and UDP sockets, so its socket look-ups answer from the kernel's own
//! tables. Crafted packets that match a connection must be counted as
//! in-connection and never limited; the same packets matching none are
//! stray; a SYN to a closed port is dropped when the policy says so.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    time::Duration,
};

use filter_common::{
    cookie::{self, Settings},
    flag, port_mode, Config, RateLimit, Reason,
};
use filter_tests::{
    kernel::{Filter, DROP, PASS, TX},
    packet::{Packet, ACK, FIN, PROTO_UDP, PSH, RST, SYN},
    sockets::{namespace, Connection},
};

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
            listener: _listener,
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

/// The initial sequence number of [`half_open`] handshakes.
const HALF_OPEN_ISN: u32 = 1000;

/// The next sequence number `sock` will send (TCP_REPAIR's view of the
/// send queue), so a test can craft the segment the server expects next.
fn send_seq(sock: &std::net::TcpStream) -> u32 {
    let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
    let set = |opt: i32, v: i32| {
        // SAFETY: setsockopt with an int on our socket.
        let rc =
            unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, opt, (&v as *const i32).cast(), 4) };
        assert_eq!(
            rc,
            0,
            "setsockopt {opt}: {}",
            std::io::Error::last_os_error()
        );
    };
    set(libc::TCP_REPAIR, 1);
    set(libc::TCP_REPAIR_QUEUE, 2); // TCP_SEND_QUEUE
    let mut seq = 0u32;
    let mut len = 4u32;
    // SAFETY: getsockopt into a u32 of the given length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUEUE_SEQ,
            (&mut seq as *mut u32).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_QUEUE_SEQ: {}", std::io::Error::last_os_error());
    set(libc::TCP_REPAIR, -1); // TCP_REPAIR_OFF_NO_WP: leave repair, no window probe
    seq
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
        p.seq = HALF_OPEN_ISN;
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
        for port in [5555, 5556, 5557] {
            half_open(src, port, dst);
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut f = Filter::new();
        let from = |sport: u16, flags: u8| {
            Packet::tcp(src, flags).with(|p| {
                p.dst = dst.ip();
                p.sport = sport;
                p.dport = dst.port();
                p.seq = HALF_OPEN_ISN + 1;
            })
        };
        let seen = |f: &Filter| {
            let c = f.counters(src).unwrap();
            (c.new_conns, c.empty_conns, c.ack, c.in_conn)
        };
        // The ACK that meets a request socket completes a handshake; one
        // from a port with no request socket is stray.
        assert_eq!(f.run(&from(5555, ACK).build()), PASS);
        assert_eq!(seen(&f), (1, 0, 0, 1));
        f.run(&from(5600, ACK).build());
        assert_eq!(seen(&f), (1, 0, 1, 1));
        // A close at the client's first sequence number on a request
        // socket (the stack has not taken in the ACK yet): empty.
        f.run(&from(5556, FIN | ACK).build());
        assert_eq!(seen(&f), (1, 1, 1, 2));
        // A close after 10 bytes of data: not empty.
        f.run(&from(5557, FIN | ACK).with(|p| p.seq += 10).build());
        assert_eq!(seen(&f), (1, 1, 1, 3));

        // Established: empty while the socket has received nothing and the
        // close is the next sequence it expects; not once data came.
        let mut conn = Connection::open("[2001:db8:9::1]:7002", "[2001:db8:9::2]:0");
        let fin = |conn: &Connection| {
            let seq = send_seq(&conn.client);
            conn.packet(FIN | ACK).with(|p| p.seq = seq).build()
        };
        f.run(&fin(&conn));
        assert_eq!(seen(&f).1, 2);
        // A close further on (data of the source still in flight): not empty.
        f.run(
            &conn
                .packet(RST)
                .with(|p| p.seq = send_seq(&conn.client) + 5)
                .build(),
        );
        assert_eq!(seen(&f).1, 2);
        conn.client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        f.run(&fin(&conn));
        assert_eq!(seen(&f).1, 2, "data was received");
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

#[test]
fn held_idle_connections_are_read_from_the_kernels_tables() {
    namespace().run(|| {
        let v4 = TcpListener::bind("10.9.0.1:7100").unwrap();
        // A dual-stack listener: IPv4 clients appear as ::ffff:a.b.c.d.
        let dual = TcpListener::bind("[::]:7101").unwrap();
        let connect = |from: &str, to: SocketAddr| {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
                .unwrap();
            sock.connect(&to.into()).unwrap();
            std::net::TcpStream::from(sock)
        };
        let idle: Vec<_> = (0..3)
            .map(|_| connect("10.9.0.2", v4.local_addr().unwrap()))
            .collect();
        let mut busy = connect("10.9.0.2", v4.local_addr().unwrap());
        busy.write_all(b"hello").unwrap();
        let dual_idle = connect("10.9.0.2", "10.9.0.1:7101".parse().unwrap());
        // A client that only receives (a push stream): it sends no data
        // but acknowledges the host's, so it is not idle.
        let mut reader = connect("10.9.0.2", "10.9.0.1:7101".parse().unwrap());
        let kept = dual.accept().unwrap(); // dual_idle's server side, kept open
        let (mut pusher, _) = dual.accept().unwrap();
        let push = std::thread::spawn(move || {
            for _ in 0..15 {
                pusher.write_all(&[1u8; 100]).unwrap();
                reader.read_exact(&mut [0u8; 100]).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
            (pusher, reader)
        });
        let rules = |idle: u64| filter_ctl::policy::Connections {
            idle_after: filter_ctl::policy::Dur::secs(idle),
            slow_after: filter_ctl::policy::Dur::secs(3600),
            slow_rate: 64,
        };
        let mut ages = filter_ctl::kernel::conns::Ages::default();
        let now = std::time::Instant::now;
        std::thread::sleep(Duration::from_millis(1200));
        let held = filter_ctl::kernel::conns::inbound(64, &rules(1), &mut ages, now()).unwrap();
        let key = filter_ctl::model::addr::source_key("10.9.0.2".parse().unwrap(), 64);
        let h = held.get(&key).copied().unwrap_or_default();
        // 6 inbound (the client ends are outgoing: not counted), 4 idle.
        assert_eq!((h.established, h.idle, h.slow), (6, 4, 0), "{held:?}");
        assert_eq!(held.len(), 1, "{held:?}");
        // Not idle yet with a longer idle_after.
        let h = filter_ctl::kernel::conns::inbound(64, &rules(30), &mut ages, now()).unwrap()[&key];
        assert_eq!((h.established, h.idle), (6, 0));
        let streams = push.join().unwrap();
        // Slow: once old enough (as first seen by an earlier call), the busy
        // connection's 5 bytes are a trickle and nothing was sent back.
        let slow = filter_ctl::policy::Connections {
            slow_after: filter_ctl::policy::Dur::secs(2),
            ..rules(30)
        };
        let later = now() + Duration::from_secs(3);
        let h = filter_ctl::kernel::conns::inbound(64, &slow, &mut ages, later).unwrap()[&key];
        assert_eq!(h.slow, 1, "{h:?}");
        // The host answering it (a response, a download) makes it not slow.
        let me = busy.local_addr().unwrap();
        let mut server_side = (0..4)
            .map(|_| v4.accept().unwrap())
            .find(|(_, peer)| *peer == me)
            .unwrap()
            .0;
        server_side.write_all(&[7u8; 1000]).unwrap();
        busy.read_exact(&mut [0u8; 1000]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let h = filter_ctl::kernel::conns::inbound(64, &slow, &mut ages, later).unwrap()[&key];
        assert_eq!(h.slow, 0, "{h:?}");
        drop((idle, dual_idle, kept, dual, v4, streams));
    });
}

/// The one's-complement sum of `b` as 16-bit big-endian words.
fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn folds_to_zero(mut s: u32) -> bool {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

fn cookie_config() -> Config {
    Config {
        track_min_packets: 1,
        verify_mode: filter_common::verify_mode::SYN_COOKIE,
        verify_active: 1,
        verified_ttl_s: 60,
        ..Config::default()
    }
}

/// A SYN from an unverified source to a listener is answered by the filter
/// with a SYN-ACK carrying the listener's cookie; the ACK that returns it
/// verifies the source (the kernel makes the connection from the cookie).
fn syn_cookie_answers_and_the_ack_verifies(server: &'static str, client_ip: &'static str) {
    namespace().run(move || {
        filter_tests::pin_to_cpu(0);
        // The listener-bound cookie route: the kernel hands out a cookie
        // for a listener whose queue is not full only with syncookies=2
        // (the controller sets it while syn_cookie is on). This namespace's.
        std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").unwrap();
        let listener = TcpListener::bind(server).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut f = Filter::with_config(cookie_config());
        let server_ip = listener.local_addr().unwrap().ip();
        let syn = Packet::tcp(client_ip, SYN).with(|p| {
            p.dst = server_ip;
            p.sport = 41000;
            p.dport = port;
            p.seq = 0x1000_0000;
            p.tcp_doff = 10; // 20 option bytes, as Linux sends
            p.mss = Some(1460);
        });
        let frame = syn.build();
        let (verdict, out) = f.run_out(&frame);
        assert_eq!(verdict, TX, "the SYN was not answered");
        assert_eq!(f.stat(Reason::ChallengeSent).packets, 1);
        let v6 = server_ip.is_ipv6();
        let (l3, l4) = if v6 { (14, 54) } else { (14, 34) };
        assert_eq!(out.len(), l4 + 24, "frame cut to the SYN-ACK");
        // Ethernet and addresses swapped.
        assert_eq!((&out[0..6], &out[6..12]), (&frame[6..12], &frame[0..6]));
        let (src, dst) = if v6 {
            (22..38, 38..54)
        } else {
            (26..30, 30..34)
        };
        assert_eq!(&out[src.clone()], &frame[dst.clone()]);
        assert_eq!(&out[dst.clone()], &frame[src.clone()]);
        let t = &out[l4..];
        assert_eq!(&t[0..2], &port.to_be_bytes());
        assert_eq!(&t[2..4], &41000u16.to_be_bytes());
        assert_eq!(t[13], 0x12, "SYN|ACK");
        assert_eq!(
            u32::from_be_bytes(t[8..12].try_into().unwrap()),
            0x1000_0001
        );
        assert_eq!(&t[20..22], &[2, 4], "MSS option");
        let mss = u16::from_be_bytes([t[22], t[23]]);
        assert!((536..=1460).contains(&mss), "mss {mss}");
        assert_ne!(u16::from_be_bytes([t[14], t[15]]), 0, "zero window");
        // Checksums: IPv4 header; TCP over the pseudo-header.
        let pseudo = if v6 {
            sum16(&out[22..54]) + 24 + 6
        } else {
            assert!(folds_to_zero(sum16(&out[l3..l3 + 20])), "IPv4 checksum");
            sum16(&out[26..34]) + 24 + 6
        };
        assert!(folds_to_zero(pseudo + sum16(t)), "TCP checksum");
        let cookie = u32::from_be_bytes(t[4..8].try_into().unwrap());

        // The client's ACK returns the cookie: verified, passed up.
        let ack = syn
            .clone()
            .with(|p| {
                p.tcp_flags = ACK;
                p.tcp_doff = 5;
                p.mss = None;
                p.seq = 0x1000_0001;
                p.ack = cookie.wrapping_add(1);
            })
            .build();
        assert_eq!(f.run(&ack), PASS);
        assert_eq!(f.stat(Reason::Verified).packets, 1);
        assert_eq!(f.maps.verified().unwrap().len(), 1);
        // A forged ACK (wrong cookie) verifies nothing.
        let forged = Packet::tcp(if v6 { "2001:db8:9::77" } else { "10.9.0.77" }, ACK)
            .with(|p| {
                p.dst = server_ip;
                p.sport = 41001;
                p.dport = port;
                p.seq = 5;
                p.ack = cookie ^ 0x5555;
            })
            .build();
        assert_eq!(f.run(&forged), PASS, "stray ACKs still pass to the kernel");
        assert_eq!(f.maps.verified().unwrap().len(), 1);
        // Verified now: its next SYN goes to the listener as it is.
        assert_eq!(f.run(&frame), PASS);
        assert_eq!(f.stat(Reason::ChallengeSent).packets, 1);
        // No listener on a port: the SYN passes untouched (the kernel
        // answers with RST); nor is a SYN with data (TCP Fast Open) answered.
        let other = syn.clone().with(|p| {
            p.src = if v6 { "2001:db8:9::78" } else { "10.9.0.78" }
                .parse()
                .unwrap();
            p.dport = port.wrapping_add(1);
        });
        assert_eq!(f.run(&other.build()), PASS);
        let tfo = syn.clone().with(|p| {
            p.src = if v6 { "2001:db8:9::79" } else { "10.9.0.79" }
                .parse()
                .unwrap();
            p.payload = 100;
        });
        assert_eq!(f.run(&tfo.build()), PASS);
        assert_eq!(f.stat(Reason::ChallengeSent).packets, 1);
    });
}

#[test]
fn syn_cookie_answers_an_ipv4_syn_and_its_ack_verifies_the_source() {
    syn_cookie_answers_and_the_ack_verifies("10.9.0.1:0", "10.9.0.2");
}

#[test]
fn syn_cookie_answers_an_ipv6_syn_and_its_ack_verifies_the_source() {
    syn_cookie_answers_and_the_ack_verifies("[2001:db8:9::1]:0", "2001:db8:9::2");
}

/// CLOCK_MONOTONIC in ns: the clock the data path's cookies use.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const KEY: [u64; 2] = [0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321];

fn transparent_settings() -> Settings {
    Settings {
        keys: [KEY, [1, 2]],
        route: cookie::route::KFUNC,
        wscale: 7,
        timestamps: 1,
        sack: 1,
        window_scaling: 1,
    }
}

/// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window
/// scale 9.
const LINUX_SYN: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 1, 3, 3, 9,
];

/// The transparent route in XDP: a SYN is answered with the filter's own
/// cookie and every option the client offered (as Linux lays them out),
/// with correct checksums; the ACK returning a valid cookie verifies the
/// source, a forged or expired one is dropped; TCP Fast Open passes.
fn own_cookie_answers_with_every_option(server: &'static str, client_ip: &'static str) {
    namespace().run(move || {
        filter_tests::pin_to_cpu(0);
        let listener = TcpListener::bind(server).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server_ip = listener.local_addr().unwrap().ip();
        let v6 = server_ip.is_ipv6();
        let mut f = Filter::with_config(cookie_config());
        f.maps.set_cookie_settings(&transparent_settings()).unwrap();
        let isn = 0x2000_0000u32;
        let syn = Packet::tcp(client_ip, SYN).with(|p| {
            p.dst = server_ip;
            p.sport = 42000;
            p.dport = port;
            p.seq = isn;
            p.options = LINUX_SYN.to_vec();
        });
        let frame = syn.build();
        let (verdict, out) = f.run_out(&frame);
        assert_eq!(verdict, TX, "the SYN was not answered");
        let (l3, l4) = if v6 { (14, 54) } else { (14, 34) };
        assert_eq!(out.len(), l4 + 40, "a 40-byte TCP header");
        assert_eq!((&out[0..6], &out[6..12]), (&frame[6..12], &frame[0..6]));
        let t = &out[l4..];
        assert_eq!(&t[0..2], &port.to_be_bytes());
        assert_eq!(&t[2..4], &42000u16.to_be_bytes());
        assert_eq!(t[12] >> 4, 10);
        assert_eq!(t[13], 0x12, "SYN|ACK");
        assert_eq!(u32::from_be_bytes(t[8..12].try_into().unwrap()), isn + 1);
        assert_ne!(u16::from_be_bytes([t[14], t[15]]), 0, "zero window");
        // MSS (the device's MTU less the headers), SACK permitted,
        // timestamps echoing the client's, NOP, our window scale.
        assert_eq!(&t[20..22], &[2, 4]);
        let mss = u16::from_be_bytes([t[22], t[23]]);
        assert!((1220..=65495).contains(&mss), "mss {mss}");
        assert_eq!(&t[24..28], &[4, 2, 8, 10]);
        assert_eq!(&t[32..36], &[0x11, 0x22, 0x33, 0x44], "TSecr");
        assert_eq!(&t[36..40], &[1, 3, 3, 7]);
        let pseudo = if v6 {
            sum16(&out[22..54]) + 40 + 6
        } else {
            assert!(folds_to_zero(sum16(&out[l3..l3 + 20])), "IPv4 checksum");
            sum16(&out[26..34]) + 40 + 6
        };
        assert!(folds_to_zero(pseudo + sum16(t)), "TCP checksum");
        // The cookie is ours, for this tuple, remembering the client's
        // options.
        let c = u32::from_be_bytes(t[4..8].try_into().unwrap());
        let addr = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let tuple = cookie::Tuple {
            saddr: addr(client_ip.parse().unwrap()),
            daddr: addr(server_ip),
            sport: 42000u16.to_be(),
            dport: port.to_be(),
            isn,
        };
        let minute = cookie::minute(monotonic_ns());
        let opts = cookie::decode([KEY, KEY], &tuple, minute, c).expect("our cookie");
        assert_eq!((opts.mss, opts.wscale, opts.sack), (1460, 9, true));

        // The ACK returning it verifies the source and goes up.
        let ack = |src: &str, sport: u16, cookie: u32| {
            Packet::tcp(src, ACK)
                .with(|p| {
                    p.dst = server_ip;
                    p.sport = sport;
                    p.dport = port;
                    p.seq = isn + 1;
                    p.ack = cookie.wrapping_add(1);
                })
                .build()
        };
        assert_eq!(f.run(&ack(client_ip, 42000, c)), PASS);
        assert_eq!(f.stat(Reason::Verified).packets, 1);
        assert_eq!(f.maps.verified().unwrap().len(), 1);
        // A forged cookie, one for another port, an expired one (two
        // minutes old): dropped, nothing verified.
        // (IPv6 sources are verified by /64: another one is in another.)
        let other = if v6 { "2001:db8:a::70" } else { "10.9.0.70" };
        let expired = cookie::encode(KEY, &tuple, minute.wrapping_sub(2), opts);
        for (sport, bad) in [(42000, c ^ 0x100), (42001, c), (42000, expired)] {
            assert_eq!(f.run(&ack(other, sport, bad)), DROP, "{bad:#x}");
        }
        assert_eq!(f.stat(Reason::ChallengeFailed).packets, 3);
        assert_eq!(f.maps.verified().unwrap().len(), 1);
        // A SYN with no options (as flood tools send): the short answer,
        // MSS only, and 536 remembered.
        let bare = syn.clone().with(|p| {
            p.src = other.parse().unwrap();
            p.options = Vec::new();
            p.tcp_doff = 5;
        });
        let (verdict, out) = f.run_out(&bare.build());
        assert_eq!(verdict, TX);
        assert_eq!(out.len(), l4 + 24, "MSS only");
        let t = &out[l4..];
        assert_eq!(t[12] >> 4, 6);
        let pseudo = if v6 {
            sum16(&out[22..54]) + 24 + 6
        } else {
            sum16(&out[26..34]) + 24 + 6
        };
        assert!(folds_to_zero(pseudo + sum16(t)), "TCP checksum");
        let c = u32::from_be_bytes(t[4..8].try_into().unwrap());
        let tuple = cookie::Tuple {
            saddr: addr(other.parse().unwrap()),
            ..tuple
        };
        let o = cookie::decode([KEY, KEY], &tuple, minute, c).expect("our cookie");
        assert_eq!((o.mss, o.wscale, o.sack), (536, cookie::NO_WSCALE, false));
        // TCP Fast Open (a cookie request) and MD5-signed SYNs pass.
        for opts in [
            vec![2, 4, 5, 0xb4, 34, 2],
            vec![19, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let special = syn.clone().with(|p| {
                p.src = if v6 { "2001:db8:b::71" } else { "10.9.0.71" }
                    .parse()
                    .unwrap();
                p.options = opts;
            });
            assert_eq!(f.run(&special.build()), PASS);
        }
        assert_eq!(f.stat(Reason::ChallengeSent).packets, 2);
    });
}

#[test]
fn own_cookie_answers_an_ipv4_syn_with_every_option() {
    own_cookie_answers_with_every_option("10.9.0.1:0", "10.9.0.2");
}

#[test]
fn own_cookie_answers_an_ipv6_syn_with_every_option() {
    own_cookie_answers_with_every_option("[2001:db8:9::1]:0", "2001:db8:9::2");
}
