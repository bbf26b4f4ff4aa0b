//! Real sockets for the kernel tier and the benchmark: a namespace with
//! addresses to bind, and established connections to craft packets for.

use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::{netns::NetNs, packet::Packet};

/// A namespace with an interface holding the test's addresses (no DAD for
/// IPv6, so they can be bound at once). It is one end of a veth pair whose
/// other end is in the namespace too, without addresses: what the host
/// sends to an address of the subnet that is not its own goes nowhere.
pub fn namespace() -> NetNs {
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
pub struct Connection {
    pub listener: TcpListener,
    pub client: TcpStream,
    pub server: TcpStream,
}

impl Connection {
    pub fn open(server: &str, client: &str) -> Connection {
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
            listener,
            client: sock.into(),
            server,
        }
    }

    /// A packet from the client to the server on this connection.
    pub fn packet(&self, flags: u8) -> Packet {
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
