//! The host's inbound TCP connections per source, from the kernel's own
//! socket tables (sock_diag netlink, what `ss` uses): what the data path
//! cannot see without a connection table of its own, the lifetime of a
//! connection. An inbound connection is an established socket whose local
//! port has a listener; held-idle connections are those the source opened
//! and has sent nothing on for a while; slow ones are old, trickle data in
//! and get nothing back (Slowloris and kin, as far as layer 4 can tell).

use std::{
    collections::{HashMap, HashSet},
    io,
    net::IpAddr,
    time::Instant,
};

use filter_common::SourceKey;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{nlas::Nla, ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use crate::{model::addr::source_key, policy::Connections};

/// One source's inbound connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Established connections to a listening port.
    pub established: u64,
    /// Of those, the ones on which the source has sent no data since the
    /// handshake, at least `idle_after` ago, and has acknowledged nothing
    /// for as long (it is not receiving a stream from the host either).
    pub idle: u64,
    /// Of those, the ones at least `slow_after` old on which the source has
    /// sent data at less than `slow_rate` bytes/s on average, and the host
    /// has sent back no more than it received.
    pub slow: u64,
}

/// When each inbound connection was first seen, by socket cookie: the
/// kernel's tables give no age. A connection older than the controller
/// looks younger than it is, never older.
#[derive(Debug, Default)]
pub struct Ages {
    seen: HashMap<[u8; 8], Instant>,
}

/// Inbound connections per source (IPv4 /32, IPv6 per `ipv6_prefix`);
/// `ages` carries the connections' first sightings from call to call.
pub fn inbound(
    ipv6_prefix: u8,
    rules: &Connections,
    ages: &mut Ages,
    now: Instant,
) -> io::Result<HashMap<SourceKey, Held>> {
    // Listeners by (address, port); an unspecified address listens on all.
    let mut listening = HashSet::new();
    let mut out: HashMap<SourceKey, Held> = HashMap::new();
    for family in [AF_INET, AF_INET6] {
        dump(family, StateFlags::LISTEN, |r| {
            let id = &r.header.socket_id;
            listening.insert((unmap(id.source_address), id.source_port));
        })?;
    }
    let listened = |addr: IpAddr, port: u16| {
        listening.contains(&(addr, port))
            || listening.contains(&(IpAddr::from([0u8; 4]), port))
            || listening.contains(&(IpAddr::from([0u16; 8]), port))
    };
    let idle_ms = rules.idle_after.0.as_millis().min(u32::MAX as u128) as u32;
    let mut seen = HashMap::with_capacity(ages.seen.len());
    for family in [AF_INET, AF_INET6] {
        dump(family, StateFlags::ESTABLISHED, |r| {
            let id = &r.header.socket_id;
            if !listened(unmap(id.source_address), id.source_port) {
                return; // an outgoing connection of this host
            }
            let peer = unmap(id.destination_address);
            let held = out.entry(source_key(peer, ipv6_prefix)).or_default();
            held.established += 1;
            let info = r.nlas.iter().find_map(|n| match n {
                Nla::TcpInfo(i) => Some(i),
                _ => None,
            });
            let first = *ages.seen.get(&id.cookie).unwrap_or(&now);
            seen.insert(id.cookie, first);
            let Some(info) = info else {
                return;
            };
            // No data yet: the kernel's receive time is still the
            // handshake's, so last_data_recv is the connection's age; and no
            // ACK since then either (a client receiving a stream acks it).
            if info.bytes_received == 0
                && info.last_data_recv >= idle_ms
                && info.last_ack_recv >= idle_ms
            {
                held.idle += 1;
            }
            let age = now.saturating_duration_since(first);
            if info.bytes_received > 0
                && age >= rules.slow_after.0
                && info.bytes_received < rules.slow_rate.saturating_mul(age.as_secs().max(1))
                && info.bytes_acked <= info.bytes_received
            {
                held.slow += 1;
            }
        })?;
    }
    ages.seen = seen;
    Ok(out)
}

/// An IPv4 client of a dual-stack listener appears as `::ffff:a.b.c.d`.
fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// Dumps the TCP sockets of `family` in `states`, with their TCP_INFO.
fn dump(family: u8, states: StateFlags, mut each: impl FnMut(&InetResponse)) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = match family {
        AF_INET => SocketId::new_v4(),
        _ => SocketId::new_v6(),
    };
    let mut req = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states,
            socket_id,
        })
        .into(),
    );
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut at = 0;
        while at < n {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[at..n])
                .map_err(|e| bad(format!("sock_diag reply: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(&r),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}
