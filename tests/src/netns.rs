//! Network namespaces, veth pairs and a private bpf filesystem for tests.
//! Every resource is owned by a guard whose `Drop` removes it, so a failing
//! test leaves nothing behind. Names carry the pid and a counter so tests can
//! run side by side.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use socket2::{Domain, Socket, Type};

/// Where [`Server`] listens (the server side of a [`Pair`]).
pub const SERVER: &str = "10.199.0.1:8080";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name: `prefix` + pid + counter (interface names are
/// limited to 15 characters, keep `prefix` to 4).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop unless [`NetNs::keep`] was called.
pub struct NetNs {
    pub name: String,
    keep: bool,
}

impl NetNs {
    /// A namespace with a unique name starting with `prefix`.
    pub fn new(prefix: &str) -> NetNs {
        Self::named(&unique(prefix))
    }

    /// A namespace with exactly this name.
    pub fn named(name: &str) -> NetNs {
        sh(&["ip", "netns", "add", name]);
        let ns = NetNs {
            name: name.to_owned(),
            keep: false,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A guard for a namespace that already exists and is not ours to delete.
    pub fn existing(name: &str) -> NetNs {
        NetNs {
            name: name.to_owned(),
            keep: true,
        }
    }

    /// Leaves the namespace in place when this guard is dropped.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// `ip -n NAME ...`
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it
    /// opens and interfaces it names are the namespace's.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            // SAFETY: valid namespace fd; setns affects only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if !self.keep {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

/// A bpf filesystem mounted on a fresh temporary directory, unmounted and
/// removed on drop. Tests pin here instead of /sys/fs/bpf.
pub struct BpfFs {
    pub dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> BpfFs {
        let dir = std::env::temp_dir().join(unique("bpffs"));
        std::fs::create_dir_all(&dir).expect("creating bpffs mount point");
        sh(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        BpfFs { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }
}

impl Default for BpfFs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two namespaces joined by a veth pair with fixed MACs, addresses and
/// permanent neighbour entries (no ARP race).
pub struct Pair {
    pub client: NetNs,
    pub server: NetNs,
    /// Interface names inside each namespace.
    pub client_if: String,
    pub server_if: String,
}

pub const SERVER_MAC: &str = "02:00:00:00:00:01";
pub const CLIENT_MAC: &str = "02:00:00:00:00:02";

impl Pair {
    /// `client_addrs` are /24 addresses in 10.199.0.0/24 given to the client
    /// side; the server is 10.199.0.1.
    pub fn new(client_addrs: &[&str]) -> Pair {
        let pair = Pair {
            client: NetNs::new("fcl"),
            server: NetNs::new("fsv"),
            client_if: unique("vc"),
            server_if: unique("vs"),
        };
        pair.wire(client_addrs);
        pair
    }

    /// Deletes the veth pair and creates it again under the same names and
    /// addresses: new devices with new ifindexes, as after a driver reload.
    pub fn recreate(&self, client_addrs: &[&str]) {
        self.server.ip(&["link", "del", &self.server_if]);
        self.wire(client_addrs);
    }

    fn wire(&self, client_addrs: &[&str]) {
        let Pair {
            client,
            server,
            client_if,
            server_if,
        } = self;
        sh(&[
            "ip",
            "link",
            "add",
            client_if,
            "netns",
            &client.name,
            "address",
            CLIENT_MAC,
            "type",
            "veth",
            "peer",
            "name",
            server_if,
            "netns",
            &server.name,
            "address",
            SERVER_MAC,
        ]);
        server.ip(&["addr", "add", "10.199.0.1/24", "dev", server_if]);
        server.ip(&["link", "set", server_if, "up"]);
        client.ip(&["link", "set", client_if, "up"]);
        for a in client_addrs {
            client.ip(&["addr", "add", &format!("{a}/24"), "dev", client_if]);
            server.ip(&[
                "neigh",
                "replace",
                a,
                "lladdr",
                CLIENT_MAC,
                "dev",
                server_if,
                "nud",
                "permanent",
            ]);
        }
        client.ip(&[
            "neigh",
            "replace",
            "10.199.0.1",
            "lladdr",
            SERVER_MAC,
            "dev",
            client_if,
            "nud",
            "permanent",
        ]);
    }
}

/// Accepts connections in the server namespace and records their peers.
pub struct Server {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on [`SERVER`] (the [`Pair`] layout).
    pub fn start(ns: &NetNs) -> Server {
        Self::start_on(ns, SERVER.parse().unwrap())
    }

    /// Listens on `addr` inside `ns`.
    pub fn start_on(ns: &NetNs, addr: SocketAddr) -> Server {
        let listener = ns.run(move || TcpListener::bind(addr).expect("bind in server namespace"));
        listener.set_nonblocking(true).unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((_conn, peer)) => p.lock().unwrap().push(peer),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            peers,
            stop,
            handle: Some(handle),
        }
    }

    pub fn accepted_from(&self, ip: &str) -> usize {
        let peers = self.peers.lock().unwrap();
        peers.iter().filter(|p| p.ip().to_string() == ip).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A real TCP connect from `src` inside the client namespace to [`SERVER`].
pub fn connect_from(ns: &NetNs, src: &str, timeout: Duration) -> std::io::Result<()> {
    connect_to(ns, src, SERVER.parse().unwrap(), timeout)
}

/// A real TCP connect from `src` inside `ns` to `dst`.
pub fn connect_to(
    ns: &NetNs,
    src: &str,
    dst: SocketAddr,
    timeout: Duration,
) -> std::io::Result<()> {
    let src: std::net::IpAddr = src.parse().expect("source address");
    ns.run(move || {
        let sock = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        sock.bind(&SocketAddr::new(src, 0).into())?;
        sock.connect_timeout(&dst.into(), timeout)
    })
}
