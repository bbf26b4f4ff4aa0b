//! Legitimate traffic for the rig: a bulk download and many parallel
//! request/response connections, the heavy patterns a filter must never
//! take for a flood. Servers live in the server namespace, clients in the
//! client namespace; everything is bounded in time.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// What a client saw.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
    /// The connection ended with an error (a reset) instead of the
    /// server's orderly close.
    pub failed: bool,
}

impl Transfer {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A server that accepts connections in the background and hands each to
/// `serve` on its own thread; stops accepting when dropped.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Acceptor {
    pub fn start(
        ns: &NetNs,
        addr: SocketAddr,
        serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
    ) -> Acceptor {
        let listener = ns.run(move || TcpListener::bind(addr).expect("bind in server namespace"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let serve = serve.clone();
                        thread::spawn(move || serve(conn));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Acceptor {
            stop,
            handle: Some(handle),
        }
    }

    /// Sends zeros as fast as the connection takes them for `secs`, then
    /// closes.
    pub fn bulk(ns: &NetNs, addr: SocketAddr, secs: Duration) -> Acceptor {
        Self::start(ns, addr, move |mut conn| {
            let chunk = vec![0u8; 64 * 1024];
            let start = Instant::now();
            while start.elapsed() < secs {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    }

    /// Reads one request line, answers with a short response, closes: an
    /// HTTP/1.0 exchange in miniature.
    pub fn request_response(ns: &NetNs, addr: SocketAddr) -> Acceptor {
        Self::start(ns, addr, |mut conn| {
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            while !got.contains(&b'\n') {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Downloads from `dst` until the server closes (or `limit` passes), from
/// the client namespace; on a thread, so floods can run meanwhile.
pub fn download(ns: &NetNs, dst: SocketAddr, limit: Duration) -> thread::JoinHandle<Transfer> {
    let ns = NetNs::existing(&ns.name);
    thread::spawn(move || {
        ns.run(move || {
            let start = Instant::now();
            let mut t = Transfer {
                bytes: 0,
                elapsed: Duration::ZERO,
                failed: false,
            };
            let mut conn = match TcpStream::connect_timeout(&dst, Duration::from_secs(2)) {
                Ok(c) => c,
                Err(_) => {
                    t.failed = true;
                    return t;
                }
            };
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            while start.elapsed() < limit {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => t.bytes += n as u64,
                    Err(_) => {
                        t.failed = true;
                        break;
                    }
                }
            }
            t.elapsed = start.elapsed();
            t
        })
    })
}

/// `n` connections at once, each sending a request and reading the whole
/// response; how many got it.
pub fn parallel_requests(ns: &NetNs, dst: SocketAddr, n: usize) -> usize {
    ns.run(move || {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                thread::spawn(move || -> bool {
                    let Ok(mut c) = TcpStream::connect_timeout(&dst, Duration::from_secs(3)) else {
                        return false;
                    };
                    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    if c.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
                        return false;
                    }
                    let mut body = Vec::new();
                    c.read_to_end(&mut body).is_ok() && body.ends_with(b"ok")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|ok| *ok)
            .count()
    })
}
